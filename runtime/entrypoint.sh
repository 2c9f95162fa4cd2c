#!/bin/sh
# Entrypoint of the Kiln sandbox runtime image (runs under tini as PID 1).
#
# Keeps the container alive and keeps the default tmux session running:
#
#   * a private tmux server on socket `kiln` (`tmux -L kiln`), configured by
#     /etc/kiln/tmux.conf, started here so it inherits the container's
#     environment (PROJECT_NAME, DATABASE_URL, ANTHROPIC_*, user variables);
#   * a session named `main`, in $HOME (/home/kiln), running `claude` (or
#     $KILN_SESSION_COMMAND; a login shell if claude is not installed);
#   * a supervision loop: every few seconds it recreates `main` if it is gone
#     and respawns its panes whose program has exited (tmux.conf sets
#     remain-on-exit, so an exited program leaves a dead pane behind rather
#     than ending the session);
#   * SIGTERM/SIGINT/SIGHUP kill the tmux server and exit 0.
#
# Other sessions are created by Kiln through `kubectl exec`
# (`tmux -L kiln new-session -A -s NAME`); they are not supervised here.
# The readiness probe is `tmux -L kiln has-session -t =main`.
#
# A pooled sandbox (KILN_POOLED=1: started by Kiln's warm pool before any
# project claims it) keeps a tmux server with no session and waits. A claim
# runs `kiln-entrypoint claim` once through `kubectl exec`, with the
# project's environment on stdin (never in argv: the API server logs exec
# commands); it is kept in $CLAIM_FILE, in the home volume, so a restarted
# pod comes back with it. From then on the sandbox is supervised as any
# other, with that environment in every session.
#
# Usage:
#   kiln-entrypoint            supervise (the container's main process)
#   kiln-entrypoint ensure     create `main` unless it exists, then exit
#   kiln-entrypoint claim      (pooled) take the environment on stdin, start `main`
#   kiln-entrypoint ready      readiness: `main` exists, or (pooled, unclaimed)
#                              the tmux server answers
#   kiln-entrypoint CMD ARG... run CMD instead (debugging: `docker run IMAGE bash`)
#
# Environment (defaults in brackets):
#   KILN_SESSION_COMMAND     shell command run in `main` [claude]
#   KILN_TMUX_SOCKET         tmux socket name, as in `tmux -L` [kiln]
#   KILN_TMUX_CONF           tmux config file [/etc/kiln/tmux.conf]
#   KILN_WORKDIR             working directory of `main` [$HOME, else /home/kiln]
#   KILN_SUPERVISE_INTERVAL  seconds between checks [2]
#   KILN_POOLED              1: a pooled sandbox, waiting for its claim []
#
# The claim file is a shell script Kiln writes: a first line
# `# kiln-claim keys: K1 K2 ...` and one `export K='value'` per key.
set -eu

SESSION=main
SOCKET="${KILN_TMUX_SOCKET:-kiln}"
CONF="${KILN_TMUX_CONF:-/etc/kiln/tmux.conf}"
WORKDIR="${KILN_WORKDIR:-${HOME:-/home/kiln}}"
INTERVAL="${KILN_SUPERVISE_INTERVAL:-2}"
POOLED="${KILN_POOLED:-}"
CLAIM_FILE="$WORKDIR/.kiln-claim.env"

log() {
    printf 'kiln-entrypoint: %s\n' "$*" >&2
}

case "$INTERVAL" in
    '' | *[!0-9.]* | .* | *.*.*)
        log "KILN_SUPERVISE_INTERVAL=$INTERVAL is not a number of seconds; using 2"
        INTERVAL=2
        ;;
esac

# Inside another tmux (a developer running this by hand), $TMUX would point
# the client at the outer server's session; this script only ever talks to
# its own socket.
unset TMUX

# The config is passed on every call; tmux reads it only when the call starts
# the server. Without it tmux would fall back to /etc/tmux.conf.
tmux_k() {
    if [ -r "$CONF" ]; then
        tmux -L "$SOCKET" -f "$CONF" "$@"
    else
        tmux -L "$SOCKET" "$@"
    fi
}

# The shell command the `main` session runs; tmux hands it to the default
# shell with -c, so it may be any shell snippet.
session_command() {
    if [ -n "${KILN_SESSION_COMMAND:-}" ]; then
        printf '%s\n' "$KILN_SESSION_COMMAND"
    elif command -v claude >/dev/null 2>&1; then
        printf '%s\n' claude
    else
        # Expanded by the pane's shell, not here.
        # shellcheck disable=SC2016
        printf '%s\n' 'echo "kiln: claude is not installed in this image; starting a login shell instead."; exec "${SHELL:-/bin/sh}" -l'
    fi
}

# Creates `main` unless it exists. Idempotent, and safe against a concurrent
# caller: if creating fails because someone else created it meanwhile, the
# session exists and that is success.
ensure_session() {
    if tmux_k has-session -t "=$SESSION" 2>/dev/null; then
        return 0
    fi
    cmd=$(session_command)
    if err=$(tmux_k new-session -d -s "$SESSION" -c "$WORKDIR" "$cmd" 2>&1); then
        log "started tmux session '$SESSION' on socket '$SOCKET'"
        return 0
    fi
    if tmux_k has-session -t "=$SESSION" 2>/dev/null; then
        return 0
    fi
    log "tmux new-session failed: $err"
    return 1
}

# Whether this sandbox has been claimed (always, for one that was never pooled).
claimed() {
    [ "$POOLED" != 1 ] || [ -f "$CLAIM_FILE" ]
}

# A pooled sandbox's tmux server, kept running with no session until a
# claim (tmux would exit with its last session otherwise).
pooled_server() {
    tmux_k start-server \; set-option -s exit-empty off
}

# Loads the claim file into this shell (for main's command) and into the
# tmux server's global environment, so every session made from now on, by
# this script or by Kiln, sees the project's environment.
apply_claim() {
    [ -r "$CLAIM_FILE" ] || return 1
    keys=$(sed -n '1s/^# kiln-claim keys: //p' "$CLAIM_FILE")
    # shellcheck disable=SC1090
    . "$CLAIM_FILE"
    for key in $keys; do
        case "$key" in
            '' | [!A-Za-z_]* | *[!A-Za-z0-9_]*) continue ;;
        esac
        eval "value=\${$key-}"
        # shellcheck disable=SC2154
        tmux_k set-environment -g "$key" "$value"
    done
}

# Takes the claim's environment from stdin, keeps it (private to the
# sandbox's user, written whole or not at all) and starts `main` with it.
# Run again (the project's environment changed), it replaces the
# environment for every session made from then on, as Kiln's local driver
# does; programs already running keep theirs.
claim() {
    if [ "$POOLED" != 1 ]; then
        log "claim: this sandbox was not started by the pool"
        return 2
    fi
    old_umask=$(umask)
    umask 077
    tmp="$CLAIM_FILE.tmp.$$"
    if ! cat > "$tmp"; then
        rm -f "$tmp"
        umask "$old_umask"
        log "claim: could not write $tmp"
        return 1
    fi
    umask "$old_umask"
    if ! head -n 1 "$tmp" | grep -q '^# kiln-claim keys: '; then
        rm -f "$tmp"
        log "claim: stdin is not a claim file"
        return 2
    fi
    old_keys=
    if [ -f "$CLAIM_FILE" ]; then
        old_keys=$(sed -n '1s/^# kiln-claim keys: //p' "$CLAIM_FILE")
    fi
    mv "$tmp" "$CLAIM_FILE"
    pooled_server
    new_keys=$(sed -n '1s/^# kiln-claim keys: //p' "$CLAIM_FILE")
    for key in $old_keys; do
        case " $new_keys " in
            *" $key "*) ;;
            *) tmux_k set-environment -gu "$key" 2>/dev/null || true ;;
        esac
    done
    apply_claim
    ensure_session
}

ready() {
    if claimed; then
        tmux_k has-session -t "=$SESSION" 2>/dev/null
    else
        # Answers only when the server runs (it does not start one).
        tmux_k show-options -s exit-empty >/dev/null 2>&1
    fi
}

# Respawns every dead pane of `main` with the command it was created with.
respawn_dead_panes() {
    panes=$(tmux_k list-panes -s -t "=$SESSION" -F '#{pane_dead} #{pane_id}' 2>/dev/null) || return 0
    printf '%s\n' "$panes" | while read -r dead pane; do
        if [ "$dead" = 1 ]; then
            log "the program in $SESSION ($pane) exited; restarting it"
            tmux_k respawn-pane -t "$pane" 2>/dev/null || log "could not respawn $pane"
        fi
    done
}

sleep_pid=
stop() {
    log "stopping: killing the tmux server on socket '$SOCKET'"
    if [ -n "$sleep_pid" ]; then
        kill "$sleep_pid" 2>/dev/null || true
    fi
    tmux_k kill-server 2>/dev/null || true
    exit 0
}

supervise() {
    trap stop TERM INT HUP
    if ! command -v tmux >/dev/null 2>&1; then
        log "tmux is not installed"
        exit 1
    fi
    if [ ! -r "$CONF" ]; then
        log "warning: $CONF is not readable; starting tmux with its defaults"
    fi
    cd "$WORKDIR" 2>/dev/null || cd /
    loaded=
    while :; do
        if claimed; then
            # A pooled sandbox restarted after its claim gets the claim's
            # environment back before `main` starts again.
            if [ "$POOLED" = 1 ] && [ -z "$loaded" ]; then
                pooled_server
                apply_claim || log "could not load $CLAIM_FILE"
                loaded=1
            fi
            ensure_session || log "could not start the '$SESSION' session; retrying in ${INTERVAL}s"
            respawn_dead_panes
        else
            pooled_server || log "could not start the tmux server; retrying in ${INTERVAL}s"
        fi
        # Sleep in the background and wait for it: a trapped signal
        # interrupts `wait` at once, where it would not interrupt `sleep`.
        sleep "$INTERVAL" &
        sleep_pid=$!
        wait "$sleep_pid" || true
        sleep_pid=
    done
}

case "${1:-}" in
    '')
        supervise
        ;;
    ensure)
        ensure_session
        ;;
    claim)
        claim
        ;;
    ready)
        ready
        ;;
    *)
        exec "$@"
        ;;
esac
