// General linear mixed model, any number of grouping factors F, q_f effects each:
//   y = X beta + sum_f (Z_f * b_f[g_f]).sum(1) + e,   e ~ N(0, sigma^2)
//   b_f[j] = diag(sigs_f) L_f z_f[j],  z ~ N(0, 1)   (non-centred)
//   L_f ~ lkj_corr_cholesky(lkj_eta[f]) for a correlated factor (q_f >= 2), identity for an
//   uncorrelated (||) factor or q_f = 1.
// Mirrors lmm_pymc.models.build_model(design, "cholesky"); the data come from
// lmm_pymc.stan.general_data (lmm_pymc.crosscheck pair "general"). Names shared with PyMC:
// beta, sigma, sigs, R; z is every factor's z_k flattened row-major, factor after factor.
//
// Stan has no ragged arrays of matrices, so the Cholesky factors of all correlated factors
// are built from one unconstrained vector L_free by Stan's own transform (canonical partial
// correlations through tanh, Stan Math's cholesky_corr_constrain), written out below.
// With add_jacobian = 1 its log-Jacobian is added (for sampling); with add_jacobian = 0
// the density lives on (beta, sigma, sigs, strictly-lower entries of each L_f, z), as for
// the built-in cholesky_factor_corr type with log_prob(adjust_transform=False).
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
}
data {
  int<lower=1> N;  // rows
  int<lower=1> p;  // fixed effects
  matrix[N, p] X;
  vector[N] y;
  int<lower=1> F;  // grouping factors
  array[F] int<lower=1> q;  // random effects per factor
  array[F] int<lower=1> J;  // levels per factor
  array[F] int<lower=0, upper=1> correlated;  // 0 for (... || g)
  matrix[N, sum(q)] Z;  // per-row random-effects design, factor after factor
  array[N, F] int<lower=1> g;  // 1-based level of each row in each factor
  // priors per parameter (lmm_pymc.stan.programs.prior_data): family codes and parameters
  array[p] int<lower=1, upper=2> fixed_family;
  matrix[p, 3] fixed_par;
  int<lower=3, upper=6> sigma_family;
  row_vector[3] sigma_par;
  array[sum(q)] int<lower=3, upper=6> sd_family;
  matrix[sum(q), 3] sd_par;
  array[F] real<lower=0> lkj_eta;  // LKJ shape per factor (used where correlated)
  int<lower=0, upper=1> add_jacobian;  // 1 to sample; 0 to compare densities (see above)
}
transformed data {
  int Q = sum(q);
  int n_free = 0;  // unconstrained correlation parameters of all correlated factors
  int n_z = 0;  // standardised random effects of all factors
  array[F] int off_q;  // offset of factor f in sigs and in the columns of Z
  array[F] int off_free;
  array[F] int off_z;
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
  real<lower=0> sigma;  // residual sd
  vector<lower=0>[Q] sigs;  // sds of the random effects, factor after factor
  vector[n_free] L_free;  // Cholesky factors of the correlations, unconstrained
  vector[n_z] z;  // standardised random effects; factor f: (J_f, q_f) row-major
}
model {
  vector[N] mu = X * beta;
  for (k in 1:p) {
    target += prior_lpdf(beta[k] | fixed_family[k], fixed_par[k]);
  }
  target += prior_lpdf(sigma | sigma_family, sigma_par);
  for (k in 1:Q) {
    target += prior_lpdf(sigs[k] | sd_family[k], sd_par[k]);
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
        mu[i] += Z[i, (off_q[f] + 1):(off_q[f] + q[f])] * b[g[i, f]]';
      }
    }
  }
  y ~ normal(mu, sigma);
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
