# lme4's fits of the real-data suites (benchmarks/realdata_cases.py): lmer's REML fits of the
# Gaussian cases, glmer's (Laplace) of the binary and count ones; driven by
# benchmarks/realdata_lme4.py, which writes the inputs and reads the outputs:
#
#   Rscript --vanilla realdata_lme4.R MANIFEST COLUMNS OUT
#
# MANIFEST: a CSV of case, csv (the rows, exported from Python), formula, family
#           ("gaussian": lmer; "bernoulli", "binomial", "poisson": glmer with the canonical
#           link, a bernoulli outcome's 0/1 as binomial).
# COLUMNS:  a CSV of case, column, role, level: role "group" makes the column a factor
#           (labels in any order), role "fixed" a factor with exactly these levels in this
#           order (the first is the reference of R's treatment contrasts), so R codes the
#           rows as the Python side does.
# OUT:      per case <case>_fixed.csv (name, estimate, se), <case>_varcorr.csv (grp, var1,
#           var2, sdcor: sds, correlations and, for lmer, the residual sd) and
#           <case>_info.csv (rows, fit seconds, singular, log-likelihood: REML for lmer,
#           Laplace's for glmer, messages, versions).
#
# Each fit is timed around lmer() or glmer() alone, after the rows are read and coded; the cases run
# one after another in one R process (the first fit also loads lme4's compiled code).
suppressPackageStartupMessages(library(lme4))

args <- commandArgs(trailingOnly = TRUE)
if (length(args) != 3) stop("usage: Rscript realdata_lme4.R MANIFEST COLUMNS OUT")
manifest <- read.csv(args[1], stringsAsFactors = FALSE)
columns <- read.csv(args[2], stringsAsFactors = FALSE, colClasses = "character")
out <- args[3]

code_columns <- function(case, frame) {
  spec <- columns[columns$case == case, ]
  for (column in unique(spec$column)) {
    rows <- spec[spec$column == column, ]
    if (rows$role[1] == "group") {
      frame[[column]] <- factor(frame[[column]])
    } else {
      values <- as.character(frame[[column]])
      if (!all(values %in% rows$level)) stop(case, ": column ", column, " has other levels")
      frame[[column]] <- factor(values, levels = rows$level)
    }
  }
  frame
}

fit_quietly <- function(formula, frame, family) {
  # lmer's and glmer's warnings and messages (convergence, singular fit) are kept, not printed
  said <- character(0)
  keep <- function(condition) said <<- c(said, trimws(conditionMessage(condition)))
  t0 <- proc.time()[["elapsed"]]
  fit <- withCallingHandlers(
    if (family == "gaussian") {
      lmer(as.formula(formula), data = frame, REML = TRUE)
    } else {
      glmer(as.formula(formula), data = frame,
            family = if (family == "bernoulli") "binomial" else family)
    },
    warning = function(w) { keep(w); invokeRestart("muffleWarning") },
    message = function(m) { keep(m); invokeRestart("muffleMessage") }
  )
  list(fit = fit, seconds = proc.time()[["elapsed"]] - t0, said = said)
}

write_case <- function(case, result) {
  fit <- result$fit
  path <- function(what) file.path(out, paste0(case, "_", what, ".csv"))
  co <- summary(fit)$coefficients
  write.csv(data.frame(name = rownames(co), estimate = co[, 1], se = co[, 2]),
            path("fixed"), row.names = FALSE)
  vc <- as.data.frame(VarCorr(fit))
  write.csv(vc[, c("grp", "var1", "var2", "sdcor")], path("varcorr"), row.names = FALSE)
  said <- c(result$said, fit@optinfo$conv$lme4$messages)
  write.csv(data.frame(
    n = nobs(fit), fit_s = result$seconds, singular = isSingular(fit),
    loglik = as.numeric(logLik(fit)), messages = paste(unique(said), collapse = " | "),
    lme4 = format(packageVersion("lme4")), r = R.version.string
  ), path("info"), row.names = FALSE)
}

for (i in seq_len(nrow(manifest))) {
  row <- manifest[i, ]
  frame <- read.csv(row$csv, check.names = FALSE, stringsAsFactors = FALSE)
  result <- fit_quietly(row$formula, code_columns(row$case, frame), row$family)
  write_case(row$case, result)
  fitter <- if (row$family == "gaussian") "lmer" else "glmer"
  cat(sprintf("%s: %d rows, %s %.2f s\n", row$case, nobs(result$fit), fitter, result$seconds))
}
