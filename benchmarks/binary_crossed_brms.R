# brms on the binary crossed benchmark's data (benchmarks/binary_crossed.py):
#
#   Rscript binary_crossed_brms.R DATA.csv PRIORS.csv OUT_DIR DRAWS TUNE CHAINS SEED
#
# DATA.csv holds y (0/1), cond, subject, item; PRIORS.csv one row per prior of the model
# y ~ cond + (1 + cond | subject) + (1 + cond | item), bernoulli(logit), as lmm_pymc's
# defaults give them (class, coef, group, mean, sd): normal(mean, sd) on the intercept and on
# cond's slope, half-normal(0, sd) on each sd (brms bounds sd at 0), lkj(eta) on both
# correlations (the row of class "cor", its eta in column sd). cond is coded -1/2, +1/2, so
# brms's centring of the fixed part leaves the intercept, and its prior, unchanged.
# OUT_DIR/times.csv: R's start-up, brms's load, compile (rstan) and sampling seconds (warm-up
# and draws, summed over chains, and the longest chain); OUT_DIR/summary.csv: every
# parameter's mean, sd, bulk ESS and r_hat (posterior package), plus divergences.

startup_s <- proc.time()[["elapsed"]]
args <- commandArgs(trailingOnly = TRUE)
data_csv <- args[[1]]; priors_csv <- args[[2]]; out_dir <- args[[3]]
draws <- as.integer(args[[4]]); tune <- as.integer(args[[5]])
chains <- as.integer(args[[6]]); seed <- as.integer(args[[7]])

elapsed <- function(expr) system.time(expr)[["elapsed"]]
load_s <- elapsed(suppressPackageStartupMessages(library(brms)))
# Debian's r-cran-bh points at the system's Boost (libboost-dev) instead of carrying it
if (!nzchar(system.file("include", package = "BH")) && dir.exists("/usr/include/boost")) {
  rstan::rstan_options(boost_lib = "/usr/include")
}
dat <- read.csv(data_csv)
dat$subject <- factor(dat$subject)
dat$item <- factor(dat$item)
rows <- read.csv(priors_csv, stringsAsFactors = FALSE, colClasses = c(class = "character", coef = "character", group = "character"), na.strings = character())

one_prior <- function(r) {
  if (r$class == "cor") return(set_prior(sprintf("lkj(%g)", r$sd), class = "cor"))
  text <- if (r$class == "sd") sprintf("normal(0, %g)", r$sd) else
    sprintf("normal(%g, %g)", r$mean, r$sd)
  set_prior(text, class = r$class, coef = r$coef, group = r$group)
}
priors <- Reduce(`+`, lapply(seq_len(nrow(rows)), function(i) one_prior(rows[i, ])))

formula <- bf(y ~ cond + (1 + cond | subject) + (1 + cond | item))
compile_s <- elapsed(model <- brm(formula, data = dat, family = bernoulli(), prior = priors,
                                  chains = 0, silent = 2, refresh = 0))
fit <- NULL
sample_s <- elapsed(fit <- update(model, recompile = FALSE, chains = chains, cores = 1,
                                  iter = tune + draws, warmup = tune, seed = seed,
                                  refresh = 0, silent = 2))
times <- rstan::get_elapsed_time(fit$fit)
np <- nuts_params(fit)
divergent <- sum(np$Value[np$Parameter == "divergent__"])
summ <- posterior::summarise_draws(as_draws_df(fit), "mean", "sd", "ess_bulk", "rhat")
summ <- summ[grepl("^(b_|sd_|cor_)", summ$variable), ]
summ <- data.frame(variable = as.character(summ$variable), mean = as.numeric(summ$mean),
                   sd = as.numeric(summ$sd), ess_bulk = as.numeric(summ$ess_bulk),
                   rhat = as.numeric(summ$rhat))
write.csv(summ, file.path(out_dir, "summary.csv"), row.names = FALSE)
write.csv(data.frame(startup_s = startup_s, load_s = load_s, compile_s = compile_s,
                     sample_s = sample_s, chain_sum_s = sum(times),
                     chain_max_s = max(rowSums(times)), divergences = divergent),
          file.path(out_dir, "times.csv"), row.names = FALSE)
