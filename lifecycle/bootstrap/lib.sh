# shellcheck shell=bash
# Helpers sourced by on_create.sh and every step. on_create appends each step's stdout and stderr
# to the bootstrap log.

# log MESSAGE...: one timestamped line naming the step, on stderr (stdout stays for data).
log() {
    printf '%s [%s] %s\n' "$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)" "${GPUFLEET_STEP:-on_create}" "$*" >&2
}

# retry ATTEMPTS DELAY_S COMMAND...: run COMMAND until it succeeds, doubling the delay each time.
retry() {
    local attempts=$1 delay=$2 n=1
    shift 2
    until "$@"; do
        if [ "$n" -ge "$attempts" ]; then
            log "gave up after $n attempts: $*"
            return 1
        fi
        log "attempt $n of $attempts failed: $*; retrying in ${delay}s"
        sleep "$delay"
        n=$((n + 1))
        delay=$((delay * 2))
    done
}

# write_file PATH MODE: write stdin to PATH (under GPUFLEET_ROOT) atomically; log when it changed.
write_file() {
    local path="${GPUFLEET_ROOT:-}$1" mode=$2 tmp
    mkdir -p "$(dirname "$path")"
    tmp=$(mktemp "$path.XXXXXX")
    cat > "$tmp"
    chmod "$mode" "$tmp"
    if [ -f "$path" ] && cmp -s "$tmp" "$path"; then
        rm -f "$tmp"
    else
        mv -f "$tmp" "$path"
        log "wrote $1"
    fi
}

# require_var NAME...: fail naming the first unset or empty parameter.
require_var() {
    local name
    for name in "$@"; do
        if [ -z "${!name:-}" ]; then
            log "missing parameter $name in node.env"
            return 2
        fi
    done
}
