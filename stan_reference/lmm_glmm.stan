// Generalised linear mixed model (binary, count and Student-t outcomes), any number of grouping
// factors F, q_f effects each:
//   eta = X beta + sum_f (Z_f * b_f[g_f]).sum(1)
//   b_f[j] = diag(sigs_f) L_f z_f[j],  z ~ N(0, 1)   (non-centred)
//   L_f ~ lkj_corr_cholesky(lkj_eta[f]) for a correlated factor (q_f >= 2), identity for an
//   uncorrelated (||) factor or q_f = 1.
//   y ~ family(g^-1(eta)) by the data's family and link codes:
//     family 1 bernoulli    links logit (3), probit (4), cloglog (5)
//            2 binomial     (trials as data) links logit, probit, cloglog
//            3 poisson      links log (2), identity (1)
//            4 negbinomial  link log; alpha ~ its prior, var(y) = mu + mu^2 / alpha
//            5 student      link identity; y_real ~ student_t(nu, eta, sigma), sigma and
//                           nu ~ their priors (nu's default gamma(2, 0.1), brms's)
// Mirrors lmm_pymc.models.build_model(design, "cholesky", family=..., link=...) (the
// Gaussian family is lmm_general.stan's); the data come from lmm_pymc.stan.glmm_data
// (lmm_pymc.crosscheck pair "glmm"). Names shared with PyMC: beta, sigs, R, alpha (a
// vector of length 1 for the negative binomial, 0 otherwise), sigma and nu (length 1 for
// the Student-t, 0 otherwise); z is every factor's z_k flattened row-major, factor after
// factor. The counts come as y, a real outcome as y_real (each 0 where unused).
//
// The likelihood keeps its normalising constants (target += *_lpmf, as PyMC's), and the
// mean of a probit or cloglog link is computed as PyMC computes it (0.5 erfc(-eta / sqrt 2),
// -expm1(-exp(eta))); a logit or log link goes through Stan's *_logit / *_log densities,
// as PyMC's logit_p and log-link graphs do after their stabilising rewrites.
// The random effects and their correlations are lmm_general.stan's, with the same
// functions (copied: Stan programs built by PyStan cannot #include) and the same
// add_jacobian switch for the strictly-lower entries of each Cholesky factor.
functions {
  // Prior of one parameter, normalising constants included (as PyMC's), by family code:
  // 1 normal(mu, sigma), 2 student_t(nu, mu, sigma), 3 half-normal(sigma),
  // 4 half-student_t(nu, sigma), 5 exponential(lambda), 6 gamma(shape, rate); par holds the
  // parameters in that order (lmm_pymc.stan.programs.prior_data).
  real prior_lpdf(real x, int family, row_vector par) {
    if (family == 1) {
      return normal_lpdf(x | par[1], par[2]);
    } else if (family == 2) {
      return student_t_lpdf(x | par[1], par[2], par[3]);
    } else if (family == 3) {
      return normal_lpdf(x | 0, par[1]) + log2();
    } else if (family == 4) {
      return student_t_lpdf(x | par[1], 0, par[2]) + log2();
    } else if (family == 5) {
      return exponential_lpdf(x | par[1]);
    } else if (family == 6) {
      return gamma_lpdf(x | par[1], par[2]);
    }
    reject("prior family must be 1..6, found ", family);
  }
  // Cholesky factor of a K x K correlation matrix from K (K - 1) / 2 unconstrained values,
  // row by row: w = tanh(y), L[i, j] = w * sqrt(1 - sum_{k < j} L[i, k]^2).
  matrix cholesky_corr_free(vector y, int K) {
    matrix[K, K] L = rep_matrix(0, K, K);
    vector[num_elements(y)] w = tanh(y);
    int pos = 1;
    if (K == 0) {
      return L;
    }
    L[1, 1] = 1;
    for (i in 2:K) {
      real sum_sqs = 0;
      for (j in 1:(i - 1)) {
        L[i, j] = w[pos] * sqrt(1 - sum_sqs);
        sum_sqs += square(L[i, j]);
        pos += 1;
      }
      L[i, i] = sqrt(1 - sum_sqs);
    }
    return L;
  }
  // log |d (strictly-lower entries of L) / d y| of cholesky_corr_free
  real cholesky_corr_free_log_jacobian(vector y, int K) {
    vector[num_elements(y)] w = tanh(y);
    real out = sum(log1m(square(w)));
    int pos = 1;
    for (i in 2:K) {
      real sum_sqs = 0;
      for (j in 1:(i - 1)) {
        out += 0.5 * log1m(sum_sqs);
        sum_sqs += square(w[pos]) * (1 - sum_sqs);
        pos += 1;
      }
    }
    return out;
  }
  // Log likelihood of the outcome given the linear predictor, normalising constants
  // included, by family and link code (see the header).
  real family_lpmf(array[] int y, int family, int link, vector eta, array[] int trials,
                   vector alpha) {
    if (family == 3) {
      return link == 2 ? poisson_log_lpmf(y | eta) : poisson_lpmf(y | eta);
    } else if (family == 4) {
      return neg_binomial_2_log_lpmf(y | eta, alpha[1]);
    }
    // bernoulli, binomial: a probability
    if (link == 3) {
      return family == 1 ? bernoulli_logit_lpmf(y | eta) : binomial_logit_lpmf(y | trials, eta);
    }
    vector[num_elements(eta)] mu = link == 4 ? 0.5 * erfc(-eta / sqrt2())
                                             : -expm1(-exp(eta));  // probit : cloglog
    return family == 1 ? bernoulli_lpmf(y | mu) : binomial_lpmf(y | trials, mu);
  }
}
data {
  int<lower=1> N;  // rows
  int<lower=1> p;  // fixed effects
  matrix[N, p] X;
  int<lower=1, upper=5> family;  // 1 bernoulli, 2 binomial, 3 poisson, 4 negbinomial, 5 student
  int<lower=1, upper=5> link;  // 1 identity, 2 log, 3 logit, 4 probit, 5 cloglog
  array[N] int<lower=0> y;
  vector[N] y_real;  // the Student-t's outcome (0 for the other families)
  array[N] int<lower=0> trials;  // the binomial's trials per row (1 for the bernoulli)
  int<lower=1> F;  // grouping factors
  array[F] int<lower=1> q;  // random effects per factor
  array[F] int<lower=1> J;  // levels per factor
  array[F] int<lower=0, upper=1> correlated;  // 0 for (... || g)
  matrix[N, sum(q)] Z;  // per-row random-effects design, factor after factor
  array[N, F] int<lower=1> g;  // 1-based level of each row in each factor
  // priors per parameter (lmm_pymc.stan.programs.prior_data): family codes and parameters
  array[p] int<lower=1, upper=2> fixed_family;
  matrix[p, 3] fixed_par;
  array[sum(q)] int<lower=3, upper=6> sd_family;
  matrix[sum(q), 3] sd_par;
  array[F] real<lower=0> lkj_eta;  // LKJ shape per factor (used where correlated)
  int<lower=3, upper=6> alpha_family;  // prior of the negative binomial's alpha
  row_vector[3] alpha_par;
  int<lower=3, upper=6> sigma_family;  // priors of the Student-t's sigma and nu
  row_vector[3] sigma_par;
  int<lower=3, upper=6> nu_family;
  row_vector[3] nu_par;
  int<lower=0, upper=1> add_jacobian;  // 1 to sample; 0 to compare densities (see above)
}
transformed data {
  int Q = sum(q);
  int n_free = 0;  // unconstrained correlation parameters of all correlated factors
  int n_z = 0;  // standardised random effects of all factors
  int has_alpha = family == 4;
  int has_student = family == 5;
  array[F] int off_q;  // offset of factor f in sigs and in the columns of Z
  array[F] int off_free;
  array[F] int off_z;
  if ((family <= 2 && link < 3) || (family == 3 && link > 2) || (family == 4 && link != 2)
      || (family == 5 && link != 1)) {
    reject("link code ", link, " is not a link of family code ", family,
           " (bernoulli, binomial: logit 3, probit 4, cloglog 5; poisson: identity 1, ",
           "log 2; negbinomial: log 2; student: identity 1)");
  }
  for (f in 1:F) {
    off_q[f] = f == 1 ? 0 : off_q[f - 1] + q[f - 1];
    off_free[f] = n_free;
    off_z[f] = n_z;
    if (correlated[f]) {
      n_free += (q[f] * (q[f] - 1)) %/% 2;
    }
    n_z += J[f] * q[f];
  }
}
parameters {
  vector[p] beta;  // fixed effects
  vector<lower=0>[Q] sigs;  // sds of the random effects, factor after factor
  vector[n_free] L_free;  // Cholesky factors of the correlations, unconstrained
  vector[n_z] z;  // standardised random effects; factor f: (J_f, q_f) row-major
  vector<lower=0>[has_alpha] alpha;  // the negative binomial's shape
  vector<lower=0>[has_student] sigma;  // the Student-t's scale
  vector<lower=0>[has_student] nu;  // and degrees of freedom
}
model {
  vector[N] eta = X * beta;
  for (k in 1:p) {
    target += prior_lpdf(beta[k] | fixed_family[k], fixed_par[k]);
  }
  for (k in 1:Q) {
    target += prior_lpdf(sigs[k] | sd_family[k], sd_par[k]);
  }
  if (has_alpha) {
    target += prior_lpdf(alpha[1] | alpha_family, alpha_par);
  }
  if (has_student) {
    target += prior_lpdf(sigma[1] | sigma_family, sigma_par);
    target += prior_lpdf(nu[1] | nu_family, nu_par);
  }
  z ~ std_normal();
  for (f in 1:F) {
    matrix[q[f], q[f]] L = diag_matrix(rep_vector(1, q[f]));
    if (correlated[f] && q[f] > 1) {
      vector[(q[f] * (q[f] - 1)) %/% 2] free
          = segment(L_free, off_free[f] + 1, (q[f] * (q[f] - 1)) %/% 2);
      L = cholesky_corr_free(free, q[f]);
      if (add_jacobian) {
        target += cholesky_corr_free_log_jacobian(free, q[f]);
      }
      L ~ lkj_corr_cholesky(lkj_eta[f]);
    }
    {
      // (J_f, q_f): row j is (diag(sigs_f) L_f z_f[j])'
      matrix[J[f], q[f]] b = to_matrix(segment(z, off_z[f] + 1, J[f] * q[f]), J[f], q[f], 0)
                             * diag_pre_multiply(segment(sigs, off_q[f] + 1, q[f]), L)';
      for (i in 1:N) {
        eta[i] += Z[i, (off_q[f] + 1):(off_q[f] + q[f])] * b[g[i, f]]';
      }
    }
  }
  if (has_student) {
    target += student_t_lpdf(y_real | nu[1], eta, sigma[1]);
  } else {
    target += family_lpmf(y | family, link, eta, trials, alpha);
  }
}
generated quantities {
  // block-diagonal correlation of all random effects (coords random_effect)
  matrix[Q, Q] R = diag_matrix(rep_vector(1, Q));
  for (f in 1:F) {
    if (correlated[f] && q[f] > 1) {
      matrix[q[f], q[f]] L = cholesky_corr_free(
          segment(L_free, off_free[f] + 1, (q[f] * (q[f] - 1)) %/% 2), q[f]);
      R[(off_q[f] + 1):(off_q[f] + q[f]), (off_q[f] + 1):(off_q[f] + q[f])]
          = multiply_lower_tri_self_transpose(L);
    }
  }
}
