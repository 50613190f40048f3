#!/usr/bin/env bash
# flint-server.sh — run flint's self-hosted Prefect server (PostgreSQL + Prefect API) natively,
# e.g. on an HPC login node. A thin wrapper around 'flint server start|stop|status'.
#
#   deploy/flint-server.sh start     # start (or refuse if already running), print the exports
#   deploy/flint-server.sh status    # exit 0 only when API and database are healthy
#   deploy/flint-server.sh stop      # stop what start started (PIDs kept in the state folder)
#   deploy/flint-server.sh exports   # the lines to export in a shell / sbatch script
#
# Settings come from a KEY=VALUE file (default ~/.config/flint/server.env, see
# deploy/server.env.example) or the environment; the file is parsed, never sourced.
# NO SECRETS live in this script or in that file:
#   * the database URL (it holds a password) is read by flint from $FLINT_PREFECT_DATABASE_URL
#     or from the 0600 file named by FLINT_DATABASE_URL_FILE; leave both unset and flint runs
#     its own PostgreSQL in $FLINT_SERVER_DIR/pgdata (password in a 0600 file beside it);
#   * the API auth string is generated into $FLINT_SERVER_DIR/auth-string (0600).
# Nothing secret is passed on a command line or echoed.
set -euo pipefail
umask 077

usage() {
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
}

die() {
    printf 'flint-server.sh: error: %s\n' "$*" >&2
    exit 1
}

# ---------------------------------------------------------------- settings
config="${FLINT_SERVER_CONFIG:-$HOME/.config/flint/server.env}"
allowed_keys=" FLINT_SERVER_DIR FLINT_SERVER_HOST FLINT_SERVER_PORT FLINT_POSTGRES_PORT FLINT_WEB_CONCURRENCY \
FLINT_POOL_SIZE FLINT_MAX_OVERFLOW FLINT_DB_TIMEOUT FLINT_DB_CONNECTION_TIMEOUT FLINT_KEEP_ALIVE \
FLINT_GRACEFUL_SHUTDOWN FLINT_DATABASE_URL_FILE FLINT_CMD "

if [[ -f "$config" ]]; then
    lineno=0
    while IFS= read -r line || [[ -n "$line" ]]; do
        lineno=$((lineno + 1))
        line="${line%%#*}"                                   # comments
        line="${line#"${line%%[![:space:]]*}"}"              # leading blanks
        line="${line%"${line##*[![:space:]]}"}"              # trailing blanks
        [[ -z "$line" ]] && continue
        [[ "$line" == *=* ]] || die "$config:$lineno: expected KEY=VALUE"
        key="${line%%=*}"
        value="${line#*=}"
        [[ "$allowed_keys" == *" $key "* ]] || die "$config:$lineno: unknown key '$key' (allowed:$allowed_keys)"
        if [[ "$value" =~ ^\"(.*)\"$ || "$value" =~ ^\'(.*)\'$ ]]; then value="${BASH_REMATCH[1]}"; fi
        # the environment wins over the file
        if [[ -z "${!key+x}" ]]; then
            printf -v "$key" '%s' "$value"
            export "${key?}"
        fi
    done <"$config"
fi

state_dir="${FLINT_SERVER_DIR:-${SCRATCH:-/var/tmp}/$(id -un)/flint-server}"
read -r -a flint_cmd <<<"${FLINT_CMD:-flint}"   # e.g. FLINT_CMD="/opt/flint/venv/bin/python -m flint.cli"

need_flint() {
    command -v "${flint_cmd[0]}" >/dev/null || die "'${flint_cmd[0]}' not found; activate flint's environment or set FLINT_CMD"
}

check_private_file() {
    local f="$1" mode
    [[ -f "$f" ]] || die "$f does not exist"
    mode="$(stat -c '%a' "$f")"
    [[ "$mode" =~ ^[0-7]?[0-7]00$ ]] || die "$f is readable by others (mode $mode); run 'chmod 600 $f'"
}

# ---------------------------------------------------------------- commands
cmd="${1:-}"
[[ -n "$cmd" ]] || usage
shift

case "$cmd" in
    start)
        argv=(server start --state-dir "$state_dir")
        [[ -n "${FLINT_SERVER_HOST:-}" ]] && argv+=(--host "$FLINT_SERVER_HOST")
        [[ -n "${FLINT_SERVER_PORT:-}" ]] && argv+=(--port "$FLINT_SERVER_PORT")
        [[ -n "${FLINT_POSTGRES_PORT:-}" ]] && argv+=(--postgres-port "$FLINT_POSTGRES_PORT")
        [[ -n "${FLINT_WEB_CONCURRENCY:-}" ]] && argv+=(--web-concurrency "$FLINT_WEB_CONCURRENCY")
        [[ -n "${FLINT_POOL_SIZE:-}" ]] && argv+=(--pool-size "$FLINT_POOL_SIZE")
        [[ -n "${FLINT_MAX_OVERFLOW:-}" ]] && argv+=(--max-overflow "$FLINT_MAX_OVERFLOW")
        [[ -n "${FLINT_DB_TIMEOUT:-}" ]] && argv+=(--db-timeout "$FLINT_DB_TIMEOUT")
        [[ -n "${FLINT_DB_CONNECTION_TIMEOUT:-}" ]] && argv+=(--db-connection-timeout "$FLINT_DB_CONNECTION_TIMEOUT")
        [[ -n "${FLINT_KEEP_ALIVE:-}" ]] && argv+=(--keep-alive "$FLINT_KEEP_ALIVE")
        [[ -n "${FLINT_GRACEFUL_SHUTDOWN:-}" ]] && argv+=(--graceful-shutdown "$FLINT_GRACEFUL_SHUTDOWN")
        if [[ -n "${FLINT_DATABASE_URL_FILE:-}" ]]; then
            check_private_file "$FLINT_DATABASE_URL_FILE"
            argv+=(--database-url-file "$FLINT_DATABASE_URL_FILE")
        fi
        need_flint
        mkdir -p -- "$state_dir"
        exec "${flint_cmd[@]}" "${argv[@]}" "$@"
        ;;
    stop)
        need_flint
        exec "${flint_cmd[@]}" server stop --state-dir "$state_dir" "$@"
        ;;
    status)
        need_flint
        exec "${flint_cmd[@]}" server status --state-dir "$state_dir" "$@"
        ;;
    exports)
        [[ -f "$state_dir/server.json" ]] || die "no server started from $state_dir; run '$0 start'"
        url="$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["api_url"])' "$state_dir/server.json")"
        [[ -n "$url" ]] || die "no API URL recorded in $state_dir"
        printf 'export PREFECT_API_URL=%q\n' "$url"
        if [[ -f "$state_dir/auth-string" ]]; then
            printf 'export PREFECT_API_AUTH_STRING="$(cat %q)"\n' "$state_dir/auth-string"
        fi
        ;;
    -h | --help | help)
        usage
        ;;
    *)
        die "unknown command '$cmd' (start, stop, status, exports)"
        ;;
esac
