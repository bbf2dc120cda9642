#!/usr/bin/env bash
# `make cluster-smoke`: the Ray cluster launcher end to end on a loopback "cluster"
# (cluster.local.yaml: this machine as the head node, root over ssh on 127.0.0.1, no cloud).
#
#   1. installs openssh-server and rsync with apt if they are missing;
#   2. starts a private sshd on 127.0.0.1:$UNIPS_CLUSTER_SSH_PORT (default 2222) that lets root
#      in with the key ~/.ssh/unips_cluster (made if missing), and points ssh for 127.0.0.1 at
#      it with a marked block at the top of ~/.ssh/config (the launcher has no port setting);
#   3. ray up; ray submit experiments/ablation.py (smoke preset, table H); ray exec
#      experiments/tables.py on the cluster with the study and tracking URI the submit printed;
#      ray rsync-down of the tables; checks that table_H.md came back and prints it;
#   4. on exit, failed or not: ray down, stops that sshd by its pid, and removes the
#      ~/.ssh/config block and the ~/.bashrc line that cluster.local.yaml's setup adds.
#
# Needs root, and no other Ray on this machine: ray up and ray down run `ray stop`, which
# stops every Ray process of the user, not only this cluster's. The script refuses to start
# while a gcs_server or raylet runs; UNIPS_CLUSTER_SMOKE_FORCE=1 skips that check.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD
RAY=${RAY:-$REPO/.venv/bin/ray}
CONFIG=cluster.local.yaml
PORT=${UNIPS_CLUSTER_SSH_PORT:-2222}
KEY=$HOME/.ssh/unips_cluster
SSH_CONFIG=$HOME/.ssh/config
BEGIN_MARK='# >>> unips-loopback-cluster >>>'
END_MARK='# <<< unips-loopback-cluster <<<'
# On the cluster side; the remote shell expands the ~.
# shellcheck disable=SC2088
REMOTE_TABLES='~/unips-cluster-tables'

export RAY_USAGE_STATS_ENABLED=0  # no prompt, no network

STATE=""            # private folder: sshd config, host key, pid file, logs
SSHD_PID=""
CLUSTER_STARTED=0
MADE_POLICY_RC=0

say() { printf '\n== cluster-smoke: %s\n' "$*"; }
die() { printf 'cluster-smoke: %s\n' "$*" >&2; exit 1; }

cleanup() {
    local rc=$?
    set +e
    if [ "$CLUSTER_STARTED" = 1 ]; then
        say "ray down"
        "$RAY" down -y "$CONFIG"
    fi
    if [ -z "$SSHD_PID" ] && [ -n "$STATE" ] && [ -s "$STATE/sshd.pid" ]; then
        SSHD_PID=$(cat "$STATE/sshd.pid")
    fi
    if [ -n "$SSHD_PID" ] && kill "$SSHD_PID" 2>/dev/null; then
        say "stopped the sshd on 127.0.0.1:$PORT (pid $SSHD_PID)"
    fi
    if [ -f "$SSH_CONFIG" ]; then
        sed -i "/^$BEGIN_MARK\$/,/^$END_MARK\$/d" "$SSH_CONFIG"
        if [ ! -s "$SSH_CONFIG" ]; then
            rm -f "$SSH_CONFIG"
        fi
    fi
    if [ -f "$HOME/.bashrc" ]; then
        sed -i '/# unips-loopback-cluster$/d' "$HOME/.bashrc"
    fi
    if [ "$MADE_POLICY_RC" = 1 ]; then
        rm -f /usr/sbin/policy-rc.d
    fi
    if [ -n "$STATE" ]; then
        rm -rf "$STATE"
    fi
    if [ "$rc" -eq 0 ]; then
        say "OK"
    else
        printf '\ncluster-smoke: FAILED (exit %s)\n' "$rc" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

preflight() {
    [ "$(id -u)" = 0 ] || die "needs root: the loopback node is root@127.0.0.1 (auth.ssh_user in $CONFIG)"
    [ -x "$RAY" ] || die "no $RAY: run 'make install' first"
    [ -x "$REPO/.venv/bin/python" ] || die "no $REPO/.venv: the cluster side borrows it (see $CONFIG)"
    if [ "${UNIPS_CLUSTER_SMOKE_FORCE:-0}" != 1 ] && pgrep -f 'ray/core/src/ray/(gcs/gcs_server|raylet/raylet) ' >/dev/null; then
        die "Ray is running on this machine (pids $(pgrep -f 'ray/core/src/ray/(gcs/gcs_server|raylet/raylet) ' | xargs)). ray up and" \
            "ray down run 'ray stop', which would stop it too; wait until it is done. A leftover" \
            "of this test goes with '$RAY stop'."
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
        die "127.0.0.1:$PORT is taken; choose another port with UNIPS_CLUSTER_SSH_PORT"
    fi
}

install_packages() {
    local missing=()
    [ -x /usr/sbin/sshd ] || missing+=(openssh-server)
    command -v rsync >/dev/null || missing+=(rsync)
    if [ ${#missing[@]} -eq 0 ]; then
        return
    fi
    say "apt-get install ${missing[*]}"
    # The package must not start a system-wide sshd on 0.0.0.0:22: policy-rc.d's "101" forbids
    # service starts during the install (Debian container images ship one already).
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        MADE_POLICY_RC=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

start_sshd() {
    if [ ! -d "$HOME/.ssh" ]; then
        mkdir -m 700 "$HOME/.ssh"
    fi
    if [ ! -f "$KEY" ]; then
        ssh-keygen -q -t ed25519 -N '' -C unips-cluster -f "$KEY"
    fi
    # Under root's home, not /tmp: sshd's StrictModes refuses a key file below a
    # world-writable folder.
    mkdir -p "$HOME/.cache"
    STATE=$(mktemp -d "$HOME/.cache/unips-cluster-smoke.XXXXXX")
    ssh-keygen -q -t ed25519 -N '' -f "$STATE/host_ed25519_key"
    # Its own authorized_keys: root's ~/.ssh/authorized_keys stays as it is.
    cp "$KEY.pub" "$STATE/authorized_keys"
    cat > "$STATE/sshd_config" <<EOF
ListenAddress 127.0.0.1
Port $PORT
HostKey $STATE/host_ed25519_key
PidFile $STATE/sshd.pid
AuthorizedKeysFile $STATE/authorized_keys
AllowUsers root
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
X11Forwarding no
Subsystem sftp internal-sftp
# Read by the ~/.bashrc line that cluster.local.yaml's setup writes: only these sessions get
# the checkout's venv on PATH.
SetEnv "UNIPS_LOOPBACK_VENV=$REPO/.venv" RAY_USAGE_STATS_ENABLED=0
EOF
    mkdir -p /run/sshd  # Debian's sshd wants its privilege-separation folder
    /usr/sbin/sshd -t -f "$STATE/sshd_config"
    /usr/sbin/sshd -f "$STATE/sshd_config" -E "$STATE/sshd.log"
    local _
    for _ in $(seq 50); do
        if [ -s "$STATE/sshd.pid" ]; then
            break
        fi
        sleep 0.1
    done
    [ -s "$STATE/sshd.pid" ] || die "sshd did not start: $(cat "$STATE/sshd.log" 2>/dev/null)"
    SSHD_PID=$(cat "$STATE/sshd.pid")
    say "sshd on 127.0.0.1:$PORT (pid $SSHD_PID)"

    # First in the file, so that its Port wins over any later Host entry; the closing
    # `Host *` gives whatever followed back to all hosts.
    [ -e "$SSH_CONFIG" ] || install -m 600 /dev/null "$SSH_CONFIG"
    sed -i "/^$BEGIN_MARK\$/,/^$END_MARK\$/d" "$SSH_CONFIG"
    {
        printf '%s\n' "$BEGIN_MARK" \
            'Host 127.0.0.1' \
            "    Port $PORT" \
            "    IdentityFile $KEY" \
            '    IdentitiesOnly yes' \
            '    StrictHostKeyChecking no' \
            '    UserKnownHostsFile /dev/null' \
            '    LogLevel ERROR' \
            'Host *' \
            "$END_MARK"
        cat "$SSH_CONFIG"
    } > "$STATE/ssh_config"
    cat "$STATE/ssh_config" > "$SSH_CONFIG"
    ssh -o BatchMode=yes root@127.0.0.1 true || die "ssh root@127.0.0.1 (port $PORT) failed; see $STATE/sshd.log"
}

run_cluster() {
    say "ray up"
    CLUSTER_STARTED=1
    "$RAY" up -y "$CONFIG"

    say "ray submit experiments/ablation.py -- --preset smoke --tables H"
    "$RAY" submit "$CONFIG" experiments/ablation.py -- --preset smoke --tables H 2>&1 | tee "$STATE/submit.log"
    # The script's last line is `study=<name> tracking_uri=<uri>` (ssh -tt adds \r, Ray colours).
    local last study uri
    last=$(tr -d '\r' < "$STATE/submit.log" | sed 's/\x1b\[[0-9;]*[A-Za-z]//g' |
        grep -E '^study=[^ ]+ tracking_uri=[^ ]+$' | tail -n 1) || true
    [ -n "$last" ] || die "ray submit printed no 'study=<name> tracking_uri=<uri>' line"
    study=${last%% *}
    study=${study#study=}
    uri=${last#* tracking_uri=}

    say "ray exec: experiments/tables.py --study $study --tracking-uri $uri"
    "$RAY" exec "$CONFIG" "rm -rf $REMOTE_TABLES && cd ~/unips-cluster && python experiments/tables.py \
--study $(printf %q "$study") --tracking-uri $(printf %q "$uri") --format md --out $REMOTE_TABLES"

    say "ray rsync-down $REMOTE_TABLES"
    "$RAY" rsync-down "$CONFIG" "$REMOTE_TABLES/" "$STATE/tables/"
    [ -s "$STATE/tables/table_H.md" ] || die "no table_H.md came back from the cluster (got: $(ls -A "$STATE/tables" 2>/dev/null))"
    say "table_H.md"
    cat "$STATE/tables/table_H.md"
}

preflight
install_packages
start_sshd
run_cluster
