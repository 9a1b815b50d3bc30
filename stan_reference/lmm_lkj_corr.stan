// The tutorial's model y ~ 1 + x + (1 + x | group), centred, in current Stan syntax.
// Mirrors lmm_pymc.build_model(design, "lkj_corr").
// Names as in the tutorial and in PyMC: alpha_0, beta_0, sigma_g, random_group, sigs, R, Sigma.
// The prior hyperparameters are data (lmm_pymc.Priors); the tutorial's values are
// fixed_mu = 0, fixed_sd = 10, residual_sd = 5, group_sd = 5, lkj_eta = 2.
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
  array[N_group] vector[2] random_group;  // (intercept, slope) of each group
  vector<lower=0>[2] sigs;  // sds of random intercepts and slopes
  corr_matrix[2] R;  // correlation of random intercepts and slopes
}
transformed parameters {
  cov_matrix[2] Sigma = quad_form_diag(R, sigs);  // diag(sigs) R diag(sigs)
}
model {
  vector[N] mu;
  alpha_0 ~ normal(fixed_mu, fixed_sd);
  beta_0 ~ normal(fixed_mu, fixed_sd);
  sigma_g ~ normal(0, residual_sd);  // half-normal through <lower=0>, without its log(2)
  sigs ~ normal(0, group_sd);
  R ~ lkj_corr(lkj_eta);
  for (j in 1:N_group) {
    random_group[j] ~ multi_normal(rep_vector(0, 2), Sigma);
  }
  for (i in 1:N) {
    mu[i] = alpha_0 + beta_0 * x[i] + random_group[group_id[i], 1]
            + random_group[group_id[i], 2] * x[i];
  }
  y ~ normal(mu, sigma_g);
}
generated quantities {
  real rho = R[1, 2];
}
