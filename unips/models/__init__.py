"""The unified panoptic network (backbone, heads, losses, inference). Imports with torch and torchvision alone."""
