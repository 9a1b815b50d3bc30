// y ~ 1 + x + (1 + x | group) with the random effects integrated out.
// Mirrors lmm_pymc.build_model(design, "marginal"); same priors and names as
// lmm_cholesky.stan. Per group j, with X_j = Z_j = (1, x) on the group's rows:
//   y_j ~ N(X_j beta, V_j),  V_j = sigma_g^2 I + Z_j Sigma Z_j'
// evaluated through the per-group sums (n, X'X, X'y, y'y) and the Woodbury identity:
//   M_j = Sigma^-1 + Z_j'Z_j / sigma_g^2,  r_j = y_j - X_j beta
//   log|V_j| = 2 n_j log sigma_g + log|Sigma| + log|M_j|
//   r'V^-1 r = r'r / sigma_g^2 - (Z'r)' M_j^-1 (Z'r) / sigma_g^4
// computed in the stable form A_j = L' M_j L = I + L'Z_j'Z_j L / sigma_g^2 (Sigma = L L'),
// as lmm_pymc.marginal does, so no inverse of Sigma is formed.
// random_group is drawn in generated quantities from its exact conditional
//   b_j | y, theta ~ N(M_j^-1 Z_j'r_j / sigma_g^2, M_j^-1).
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
transformed data {
  // per-group sums; here Z_j = X_j, so X'Z = Z'Z = X'X and Z'y = X'y
  array[N_group] real n;
  array[N_group] matrix[2, 2] XtX;
  array[N_group] vector[2] Xty;
  array[N_group] real yty;
  for (j in 1:N_group) {
    n[j] = 0;
    XtX[j] = rep_matrix(0, 2, 2);
    Xty[j] = rep_vector(0, 2);
    yty[j] = 0;
  }
  for (i in 1:N) {
    int j = group_id[i];
    vector[2] xi = [1, x[i]]';
    n[j] += 1;
    XtX[j] += xi * xi';
    Xty[j] += xi * y[i];
    yty[j] += square(y[i]);
  }
}
parameters {
  real alpha_0;  // fixed intercept
  real beta_0;  // fixed slope
  real<lower=0> sigma_g;  // residual sd
  vector<lower=0>[2] sigs;  // sds of random intercepts and slopes
  cholesky_factor_corr[2] L_corr;  // R = L_corr L_corr'
}
transformed parameters {
  cov_matrix[2] Sigma = quad_form_diag(multiply_lower_tri_self_transpose(L_corr), sigs);
}
model {
  vector[2] beta = [alpha_0, beta_0]';
  matrix[2, 2] L = diag_pre_multiply(sigs, L_corr);  // Sigma = L L'
  real s2 = square(sigma_g);
  alpha_0 ~ normal(fixed_mu, fixed_sd);
  beta_0 ~ normal(fixed_mu, fixed_sd);
  sigma_g ~ normal(0, residual_sd);
  sigs ~ normal(0, group_sd);
  L_corr ~ lkj_corr_cholesky(lkj_eta);
  for (j in 1:N_group) {
    // stable form with A = L' M L = I + L'Z'Z L / s2 (A >= I, no inverse of Sigma):
    // log|V| = n log s2 + log|A|,  r'V^-1 r = r'r / s2 - |A_chol^-1 u|^2 / s2^2, u = L'Z'r
    vector[2] u = L' * (Xty[j] - XtX[j] * beta);
    real rtr = yty[j] - 2 * dot_product(beta, Xty[j]) + quad_form(XtX[j], beta);
    matrix[2, 2] A_chol = cholesky_decompose(add_diag(quad_form_sym(XtX[j], L) / s2, 1));
    vector[2] w = mdivide_left_tri_low(A_chol, u);
    real log_det_V = n[j] * log(s2) + 2 * sum(log(diagonal(A_chol)));
    real quad = rtr / s2 - dot_self(w) / square(s2);
    target += -0.5 * (n[j] * log(2 * pi()) + log_det_V + quad);
  }
}
generated quantities {
  corr_matrix[2] R = multiply_lower_tri_self_transpose(L_corr);
  real rho = R[1, 2];
  matrix[N_group, 2] random_group;
  {
    vector[2] beta = [alpha_0, beta_0]';
    matrix[2, 2] L = diag_pre_multiply(sigs, L_corr);
    real s2 = square(sigma_g);
    for (j in 1:N_group) {
      // b_j | y, theta ~ N(M^-1 Z'r / s2, M^-1) with M^-1 = L A^-1 L'
      matrix[2, 2] A_inv = inverse_spd(add_diag(quad_form_sym(XtX[j], L) / s2, 1));
      vector[2] u = L' * (Xty[j] - XtX[j] * beta);
      random_group[j] = multi_normal_rng(L * A_inv * u / s2, quad_form_sym(A_inv, L'))';
    }
  }
}
