#!/usr/bin/env bash
# Install the benchmark's R peers from Debian's packages (Debian 12 / bookworm):
#
#   r-base-core   R itself, with Rscript (R 4.2)
#   r-cran-brms   brms (2.18) and, as its dependencies, rstan (2.21), StanHeaders, Rcpp,
#                 RcppEigen, BH and a C++ toolchain to compile Stan programs
#   r-cran-lme4   lme4 (1.1-31): the maximum-likelihood fit used as the frequentist floor
#
# Idempotent: does nothing when Rscript finds brms and lme4 already; otherwise runs
# `apt-get update` and `apt-get install -y`, which skip what is installed. Needs root (or
# sudo). Takes a few minutes on a fresh machine (several hundred MB of packages).
#
#   bash benchmarks/setup_peers.sh
set -euo pipefail

PACKAGES=(r-base-core r-cran-brms r-cran-lme4)

have_peers() {
    command -v Rscript >/dev/null 2>&1 &&
        Rscript -e 'quit(status = !all(sapply(c("brms", "lme4"), requireNamespace, quietly = TRUE)))' \
            >/dev/null 2>&1
}

if have_peers; then
    echo "brms and lme4 already installed: $(Rscript --version 2>&1 | head -n 1)"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

echo "installing ${PACKAGES[*]} from Debian's packages"
$SUDO apt-get update
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y "${PACKAGES[@]}"

if have_peers; then
    Rscript -e 'cat(R.version.string, "| brms", format(packageVersion("brms")),
                    "| rstan", format(packageVersion("rstan")),
                    "| lme4", format(packageVersion("lme4")), "\n")'
else
    echo "Rscript cannot load brms and lme4 after the install" >&2
    exit 1
fi
