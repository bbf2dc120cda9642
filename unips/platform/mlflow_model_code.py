"""The file MLflow runs to build our pyfunc when it loads the model ("models from code": no pickled object
in the model). A copy of it sits in the model's ``code/`` folder, beside the copy of ``unips`` it imports."""

import mlflow

from unips.platform.mlflow_model import PanopticPyfunc

mlflow.models.set_model(PanopticPyfunc())
