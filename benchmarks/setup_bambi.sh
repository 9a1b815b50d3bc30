#!/usr/bin/env bash
# A separate virtual environment with bambi, the peer of benchmarks/first_fit.py. bambi is
# no dependency of lmm_pymc and is never installed into the package's own environment.
#
# The venv sees the system's site-packages (the same PyMC, PyTensor, nutpie and numba as
# lmm_pymc, so the two are compared on one stack) and adds only what bambi needs on top:
# bambi itself, its formulae (< 0.7, shadowing the newer one lmm_pymc uses) and
# matplotlib < 3.11 (newer matplotlib breaks arviz 0.23's import of matplotlib.style.core).
# The script then checks that PyMC and PyTensor are the system's versions: where pip had
# to change them, it says so and exits 1 (then make a full venv without
# --system-site-packages).
#
#   bash benchmarks/setup_bambi.sh [VENV]          # default /work/venvs/bambi
#   python benchmarks/first_fit.py --bambi-python VENV/bin/python
set -euo pipefail

VENV="${1:-/work/venvs/bambi}"
PYTHON="${PYTHON:-python3}"

versions() {  # PyMC and PyTensor as the given python imports them
    "$1" -c 'import pymc, pytensor; print(pymc.__version__, pytensor.__version__)'
}

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv --system-site-packages "$VENV"
fi
"$VENV/bin/python" -m pip install -q "bambi==0.17.2" "matplotlib<3.11"

system="$(versions "$PYTHON")"
venv="$(versions "$VENV/bin/python")"
if [ "$system" != "$venv" ]; then
    echo "pip changed PyMC/PyTensor in $VENV: system $system, venv $venv" >&2
    exit 1
fi
"$VENV/bin/python" -c 'import bambi, nutpie, pymc; print("bambi", bambi.__version__, "| pymc",
    pymc.__version__, "| nutpie", nutpie.__version__)'
