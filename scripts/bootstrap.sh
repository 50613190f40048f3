#!/usr/bin/env bash
# flint bootstrap: install everything flint needs, then run the demo or the tests.
#
#   bash scripts/bootstrap.sh demo     # install, then simulate + calibrate + image a small field
#   bash scripts/bootstrap.sh test     # install, then ruff + mypy + the whole pytest suite
#   bash scripts/bootstrap.sh install  # install only
#   bash scripts/bootstrap.sh lab      # install, then JupyterLab on the tutorials (127.0.0.1, token;
#                                      # prints the URL and the ssh -L line; extra args go to 'flint lab')
#
# Idempotent: Debian packages already present are not reinstalled, and the project
# virtualenv (.venv, or $FLINT_VENV) is only updated when pyproject.toml changed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
venv="${FLINT_VENV:-$here/.venv}"
python="${FLINT_PYTHON:-python3}"

# Debian packages flint uses: imager, flagger, casacore tools, SLURM (+ munge),
# PostgreSQL for the Prefect server, Chromium for the browser tests.
apt_packages=(wsclean aoflagger casacore-tools slurm-wlm slurmctld slurmd munge postgresql chromium chromium-driver)

log() { printf '[bootstrap] %s\n' "$*"; }

install_debian() {
  local missing=()
  for p in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    log "Debian packages present"
    return
  fi
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
    sudo=(sudo)
  fi
  log "installing Debian packages: ${missing[*]}"
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

install_python() {
  if [ ! -x "$venv/bin/python" ]; then
    log "creating virtualenv $venv"
    "$python" -m venv "$venv"
  fi
  local stamp="$venv/.flint-installed"
  local want
  want="$(sha256sum pyproject.toml | cut -d' ' -f1) $here"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$venv/bin/python" -c "import flint, flint_widgets" 2>/dev/null; then
    log "Python packages present ($venv)"
    return
  fi
  log "installing flint and its dependencies into $venv"
  "$venv/bin/python" -m pip install -q --upgrade pip wheel setuptools
  "$venv/bin/python" -m pip install -q -e ".[lab,dev]"
  echo "$want" > "$stamp"
}

run_demo() {
  local out="${FLINT_DEMO_DIR:-$here/demo-output}"
  log "demo: writing into $out"
  "$venv/bin/flint" demo "$out"
}

run_tests() {
  export PATH="$venv/bin:$PATH"
  log "ruff"
  "$venv/bin/ruff" check .
  log "mypy"
  "$venv/bin/mypy"
  # two worker processes: much of the suite waits (servers, schedulers, subprocess start-up)
  # rather than computes; tests/conftest.py groups what must share a process
  log "pytest (${FLINT_TEST_WORKERS:-2} workers)"
  "$venv/bin/python" -m pytest -n "${FLINT_TEST_WORKERS:-2}" --dist loadgroup --no-loadscope-reorder "$@"
}

cmd="${1:-}"
shift || true
case "$cmd" in
  install) install_debian; install_python ;;
  demo) install_debian; install_python; run_demo ;;
  test) install_debian; install_python; run_tests "$@" ;;
  lab) install_debian; install_python; exec "$venv/bin/flint" lab "$@" ;;
  *) echo "usage: bash scripts/bootstrap.sh demo|test|install|lab" >&2; exit 2 ;;
esac
