# Shared by deps.sh and check-fresh.sh.

# The non-comment lines of a deps file: package, check, why.
entries() {
    grep -v '^\s*#' "$1" | grep -v '^\s*$'
}

# Whether `cmd:NAME` is on PATH or `file:GLOB` matches an existing path.
present() {
    local check="$1"
    case "$check" in
        cmd:*) command -v "${check#cmd:}" >/dev/null 2>&1 ;;
        file:*)
            local p
            for p in ${check#file:}; do
                [ -e "$p" ] && return 0
            done
            return 1
            ;;
        *) echo "error: unknown check '$check' in deps.txt (want cmd: or file:)" >&2; return 2 ;;
    esac
}

sudo_if_needed() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}
