# The benchmark's R peers on one data set: brms (its Stan program, sampled by rstan) and
# lme4's maximum-likelihood fit. Run by benchmarks/benchmark.py, one call per run:
#
#   Rscript peers_brms.R brms  DATA.csv OUT_DIR DRAWS TUNE CHAINS SEED CACHE_DIR COLD BOUND
#   Rscript peers_brms.R lme4  DATA.csv OUT_DIR
#
# DATA.csv holds y, x, group_id. Every time is elapsed seconds; OUT_DIR/times.csv holds one
# row of them, OUT_DIR/draws.csv (brms) the post-warm-up draws of the six scalars with
# each draw's divergence flag and leapfrog steps, or OUT_DIR/gradient.csv (brms, BOUND = 1)
# two timed runs of a fixed short trajectory, from which the benchmark derives the cost
# of one gradient.
#
# brms: y ~ 1 + x + (1 + x | group_id) with the tutorial's priors (lmm_pymc.Priors.tutorial():
# normal(0, 10) on the intercept and the slope, normal(0, 5) on sigma and on each sd, both
# bounded below by 0 in brms's program, i.e. half-normal, lkj(2) on the correlation) and
# center = FALSE, so that the intercept's prior is on the intercept at x = 0, as in the
# tutorial's model. The program is brms's own (non-centred random effects, Cholesky factor
# of the correlation), compiled by rstan::stan_model from a file in CACHE_DIR named by its
# hash with auto_write = TRUE: a second run loads the compiled model (cached) instead of
# compiling it (cold); COLD = 1 compiles afresh in a temporary folder.

startup_s <- proc.time()[["elapsed"]]  # R's start-up, up to this line
args <- commandArgs(trailingOnly = TRUE)
mode <- args[[1]]
data_csv <- args[[2]]
out_dir <- args[[3]]

elapsed <- function(expr) system.time(expr)[["elapsed"]]
write_row <- function(values, name) {
  write.csv(as.data.frame(values), file.path(out_dir, name), row.names = FALSE)
}

if (mode == "lme4") {
  load_s <- elapsed(suppressPackageStartupMessages(library(lme4)))
  read_s <- elapsed(dat <- read.csv(data_csv))
  dat$group_id <- factor(dat$group_id)
  formula <- y ~ 1 + x + (1 + x | group_id)
  fit_s <- elapsed(m <- lmer(formula, data = dat, REML = FALSE))
  refit_s <- if (fit_s < 10) elapsed(lmer(formula, data = dat, REML = FALSE)) else NA
  converged <- length(m@optinfo$conv$lme4$messages) == 0
  write_row(list(startup_s = startup_s, load_s = load_s, read_s = read_s, fit_s = fit_s,
                 refit_s = refit_s, converged = converged,
                 version = format(packageVersion("lme4"))), "times.csv")
  quit(status = 0)
}
stopifnot(mode == "brms")
draws <- as.integer(args[[4]])
tune <- as.integer(args[[5]])
chains <- as.integer(args[[6]])
seed <- as.integer(args[[7]])
cache_dir <- args[[8]]
cold <- args[[9]] == "1"
bound <- args[[10]] == "1"

load_s <- elapsed(suppressPackageStartupMessages({
  library(brms)
  library(rstan)
}))
# Debian's r-cran-bh points at the system's Boost (libboost-dev) instead of carrying it
if (!nzchar(system.file("include", package = "BH")) && dir.exists("/usr/include/boost")) {
  rstan_options(boost_lib = "/usr/include")
}
read_s <- elapsed(dat <- read.csv(data_csv))
dat$group_id <- factor(dat$group_id)

# brms's program and data for the tutorial's model (no compilation: empty = TRUE)
# with center = FALSE the intercept is one of the b coefficients (b_Intercept)
priors <- c(
  prior(normal(0, 10), class = "b"),
  prior(normal(0, 5), class = "sigma"),
  prior(normal(0, 5), class = "sd"),
  prior(lkj(2), class = "cor")
)
formula <- bf(y ~ 1 + x + (1 + x | group_id), center = FALSE)
prepare_s <- elapsed({
  shell <- brm(formula, data = dat, prior = priors, empty = TRUE, backend = "rstan")
  code <- stancode(shell)
  sdata <- standata(shell)
})

# compile, or load the model compiled by an earlier run from the same program
if (cold) {
  folder <- tempfile("brms_cold_")
} else {
  folder <- cache_dir
}
dir.create(folder, recursive = TRUE, showWarnings = FALSE)
code_file <- tempfile(fileext = ".stan")
writeLines(code, code_file)
stan_path <- file.path(folder, paste0("brms_", unname(tools::md5sum(code_file)), ".stan"))
cached <- file.exists(sub("\\.stan$", ".rds", stan_path))
if (!file.exists(stan_path)) file.copy(code_file, stan_path)
compile_s <- elapsed(model <- stan_model(file = stan_path, auto_write = TRUE))

cores <- min(chains, parallel::detectCores())
if (bound) {
  # the cost of one gradient: no adaptation, a fixed small step, at most 3 leapfrog steps
  # per iteration; two runs that differ only in their number of iterations
  rows <- lapply(c(5L, 45L), function(n) {
    t <- elapsed(fit <- sampling(model, data = sdata, chains = 1, iter = n, warmup = 0,
                                 seed = seed, refresh = 0, algorithm = "NUTS",
                                 control = list(max_treedepth = 2, stepsize = 1e-3)))
    steps <- sum(get_sampler_params(fit, inc_warmup = FALSE)[[1]][, "n_leapfrog__"])
    data.frame(iterations = n, seconds = t, leapfrog = steps)
  })
  write.csv(do.call(rbind, rows), file.path(out_dir, "gradient.csv"), row.names = FALSE)
  sampling_s <- NA
  chain_s <- NA
} else {
  sampling_s <- elapsed(fit <- sampling(model, data = sdata, chains = chains,
                                        iter = tune + draws, warmup = tune, seed = seed,
                                        cores = cores, refresh = 0))
  chain_s <- max(rowSums(get_elapsed_time(fit)))
  # back into brms: its names (b_Intercept, sd_group_id__x, cor_group_id__Intercept__x, ...)
  shell$fit <- fit
  shell <- rename_pars(shell)
  wanted <- c("b_Intercept", "b_x", "sigma", "sd_group_id__Intercept", "sd_group_id__x",
              "cor_group_id__Intercept__x")
  out <- as.data.frame(posterior::as_draws_df(shell, variable = wanted))
  params <- get_sampler_params(fit, inc_warmup = FALSE)
  out$divergent__ <- unlist(lapply(params, function(p) p[, "divergent__"]))
  out$n_leapfrog__ <- unlist(lapply(params, function(p) p[, "n_leapfrog__"]))
  write.csv(out, file.path(out_dir, "draws.csv"), row.names = FALSE)
}
write_row(list(startup_s = startup_s, load_s = load_s, read_s = read_s,
               prepare_s = prepare_s, compile_s = compile_s, cached = cached,
               sampling_s = sampling_s, chain_s = chain_s, cores = cores,
               brms = format(packageVersion("brms")), rstan = format(packageVersion("rstan"))),
          "times.csv")
