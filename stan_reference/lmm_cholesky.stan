// Non-centred y ~ 1 + x + (1 + x | group) on a Cholesky factor of the correlation.
// Mirrors lmm_pymc.build_model(design, "cholesky") (PyMC: LKJCholeskyCov + z ~ N(0, 1)).
// The densities live on different coordinates: Stan on (sigs, L_corr), PyMC on the
// packed Cholesky factor of Sigma; lmm_pymc.crosscheck applies the Jacobian between them.
// The prior hyperparameters are data (lmm_pymc.Priors).
data {
  int<lower=0> N;
  array[N] real x;
  array[N] real y;
  int<lower=1> N_group;
  array[N] int<lower=1, upper=N_group> group_id;
  real fixed_mu;
  real<lower=0> fixed_sd;
  real<lower=0> residual_sd;
  real<lower=0> group_sd;
  real<lower=0> lkj_eta;
}
parameters {
  real alpha_0;  // fixed intercept
  real beta_0;  // fixed slope
  real<lower=0> sigma_g;  // residual sd
  vector<lower=0>[2] sigs;  // sds of random intercepts and slopes
  cholesky_factor_corr[2] L_corr;  // R = L_corr L_corr'
  matrix[N_group, 2] z;  // standardised random effects
}
transformed parameters {
  // (N_group, 2): row j is (diag(sigs) L_corr z_j)', so random_group[j] ~ N(0, Sigma)
  matrix[N_group, 2] random_group = z * diag_pre_multiply(sigs, L_corr)';
}
model {
  vector[N] mu;
  alpha_0 ~ normal(fixed_mu, fixed_sd);
  beta_0 ~ normal(fixed_mu, fixed_sd);
  sigma_g ~ normal(0, residual_sd);
  sigs ~ normal(0, group_sd);
  L_corr ~ lkj_corr_cholesky(lkj_eta);
  to_vector(z) ~ std_normal();
  for (i in 1:N) {
    mu[i] = alpha_0 + beta_0 * x[i] + random_group[group_id[i], 1]
            + random_group[group_id[i], 2] * x[i];
  }
  y ~ normal(mu, sigma_g);
}
generated quantities {
  corr_matrix[2] R = multiply_lower_tri_self_transpose(L_corr);
  cov_matrix[2] Sigma = quad_form_diag(R, sigs);
  real rho = R[1, 2];
}
