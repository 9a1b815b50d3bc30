// Any linear mixed model with one grouping factor, y = X beta + Z b + e, with the random
// effects integrated out and the likelihood computed from per-group sufficient statistics
// (n, X'X, X'Z, Z'Z, X'y, Z'y, y'y): one gradient costs O(J (p^2 + q^3)), whatever the
// number of rows. Mirrors lmm_pymc.build_model(design, "marginal") for any p and q (a
// correlated factor or an uncorrelated one, `(1 + x || g)` and `(1 | g)`), term for term:
// the same priors, the same algorithm (lmm_pymc.marginal) and the package's names.
//
// Per group j with G = Z'Z (q x q), residual variance s2 = sigma^2, Sigma = L L':
//   y_j ~ N(X_j beta, V_j),  V_j = s2 I + Z_j Sigma Z_j'
// Well-conditioned form (groups whose Z'Z is regular), from the group's least-squares fits
// on Z: b_y = G^-1 Z'y, H = G^-1 Z'X, A = X'X - X'Z H, c = X'y - X'Z b_y,
// RSS_y = y'y - Z'y . b_y (all data, computed once in transformed data):
//   d = b_y - H beta,  W = s2 G^-1 + Sigma
//   r'V^-1 r = (RSS_y - 2 c'beta + beta'A beta) / s2 + d'W^-1 d
//   log|V|   = (n - q) log s2 + log|G| + log|W|
// A column of X that is also a column of Z (bitwise equal sums in every group) has no
// residual on Z: its rows and columns of A and c are set to exactly 0, its column of H to
// the unit vector, as lmm_pymc.marginal.stable_constants does.
// Woodbury form (groups with a singular Z'Z: one row, a constant slope), r = y - X beta:
//   u = L'Z'r,  A_w = I + L'Z'Z L / s2
//   log|V| = n log s2 + log|A_w|,  r'V^-1 r = r'r / s2 - u'A_w^-1 u / s2^2
// The density of the covariance is on (sigs, L_corr) as in lmm_marginal.stan; the
// cross-check adds log|d chol_cov / d (sigs, L_corr)| to PyMC's (lmm_pymc.crosscheck).
// b is drawn in generated quantities from its exact conditional
//   b_j | y, theta = L c_j,  c_j ~ N(A_w^-1 u / s2, A_w^-1).
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
}
data {
  int<lower=1> J;  // groups
  int<lower=1> p;  // fixed effects
  int<lower=1> q;  // random effects
  int<lower=0, upper=1> correlated;  // 1: LKJ correlation (q >= 2); 0: independent effects
  vector<lower=0>[J] n;  // rows per group
  array[J] matrix[p, p] XtX;
  array[J] matrix[p, q] XtZ;
  array[J] matrix[q, q] ZtZ;
  array[J] vector[p] Xty;
  array[J] vector[q] Zty;
  vector<lower=0>[J] yty;
  // priors per parameter (lmm_pymc.stan.programs.prior_data): family codes and parameters
  array[p] int<lower=1, upper=2> fixed_family;
  matrix[p, 3] fixed_par;
  int<lower=3, upper=6> sigma_family;
  row_vector[3] sigma_par;
  array[q] int<lower=3, upper=6> sd_family;
  matrix[q, 3] sd_par;
  real<lower=0> lkj_eta;
}
transformed data {
  array[J] int regular;
  array[J] matrix[q, q] G_inv;
  vector[J] log_det_G = rep_vector(0, J);
  array[J] matrix[q, p] H;
  array[J] vector[q] b_y;
  array[J] matrix[p, p] A;
  array[J] vector[p] c;
  vector[J] rss_y = rep_vector(0, J);
  for (j in 1:J) {
    // regular: smallest eigenvalue of the scaled Gram matrix well above rounding
    vector[q] scale = sqrt(fmax(diagonal(ZtZ[j]), 1e-300));
    real eig_min = min(eigenvalues_sym(ZtZ[j] ./ (scale * scale')));
    regular[j] = eig_min > 1e-10;
    if (regular[j]) {
      G_inv[j] = inverse_spd(ZtZ[j]);
      log_det_G[j] = log_determinant(ZtZ[j]);
      H[j] = G_inv[j] * XtZ[j]';
      b_y[j] = G_inv[j] * Zty[j];
      A[j] = XtX[j] - XtZ[j] * H[j];
      c[j] = Xty[j] - XtZ[j] * b_y[j];
      rss_y[j] = yty[j] - dot_product(Zty[j], b_y[j]);
    } else {  // finite placeholders: these groups take the Woodbury form
      G_inv[j] = identity_matrix(q);
      H[j] = rep_matrix(0, q, p);
      b_y[j] = rep_vector(0, q);
      A[j] = rep_matrix(0, p, p);
      c[j] = rep_vector(0, p);
    }
  }
  // fixed columns that are random columns too: exactly no residual on Z
  for (i in 1:p) {
    for (k in 1:q) {
      int same = 1;
      for (j in 1:J) {
        if (XtX[j][i, i] != ZtZ[j][k, k] || XtZ[j][i, k] != ZtZ[j][k, k]
            || Xty[j][i] != Zty[j][k]) {
          same = 0;
        }
      }
      if (same) {
        for (j in 1:J) {
          if (regular[j]) {
            A[j][i, : ] = rep_row_vector(0, p);
            A[j][ : , i] = rep_vector(0, p);
            c[j][i] = 0;
            H[j][ : , i] = rep_vector(0, q);
            H[j][k, i] = 1;
          }
        }
        break;
      }
    }
  }
  int any_residual = 0;  // fixed effects without a random counterpart
  for (j in 1:J) {
    if (max(abs(to_vector(A[j]))) > 0 || max(abs(c[j])) > 0) {
      any_residual = 1;
    }
  }
}
parameters {
  vector[p] beta;  // fixed effects
  real<lower=0> sigma;  // residual sd
  vector<lower=0>[q] sigs;  // sds of the random effects
  cholesky_factor_corr[correlated ? q : 1] L_corr;  // R = L_corr L_corr' (1 x 1 if unused)
}
model {
  matrix[q, q] L;  // Sigma = L L'
  if (correlated) {
    L = diag_pre_multiply(sigs, L_corr);
  } else {
    L = diag_matrix(sigs);
  }
  matrix[q, q] Sigma = multiply_lower_tri_self_transpose(L);
  real s2 = square(sigma);
  real log_s2 = log(s2);
  for (k in 1:p) {
    target += prior_lpdf(beta[k] | fixed_family[k], fixed_par[k]);
  }
  target += prior_lpdf(sigma | sigma_family, sigma_par);
  for (k in 1:q) {
    target += prior_lpdf(sigs[k] | sd_family[k], sd_par[k]);
  }
  if (correlated) {
    L_corr ~ lkj_corr_cholesky(lkj_eta);
  }
  for (j in 1:J) {
    real log_det_V;
    real quad;
    if (regular[j]) {
      matrix[q, q] W_chol = cholesky_decompose(s2 * G_inv[j] + Sigma);
      vector[q] w = mdivide_left_tri_low(W_chol, b_y[j] - H[j] * beta);
      real rss = rss_y[j];
      if (any_residual) {
        rss += -2 * dot_product(c[j], beta) + quad_form(A[j], beta);
      }
      log_det_V = (n[j] - q) * log_s2 + log_det_G[j] + 2 * sum(log(diagonal(W_chol)));
      quad = rss / s2 + dot_self(w);
    } else {
      vector[q] u = L' * (Zty[j] - XtZ[j]' * beta);
      real rtr = yty[j] - 2 * dot_product(beta, Xty[j]) + quad_form(XtX[j], beta);
      matrix[q, q] A_chol = cholesky_decompose(add_diag(quad_form_sym(ZtZ[j], L) / s2, 1));
      vector[q] w = mdivide_left_tri_low(A_chol, u);
      log_det_V = n[j] * log_s2 + 2 * sum(log(diagonal(A_chol)));
      quad = rtr / s2 - dot_self(w) / square(s2);
    }
    target += -0.5 * (n[j] * log(2 * pi()) + log_det_V + quad);
  }
}
generated quantities {
  matrix[q, q] R = identity_matrix(q);  // correlation of the random effects
  matrix[J, q] b;  // random effects, one exact draw from their conditional
  {
    matrix[q, q] L;
    if (correlated) {
      R = multiply_lower_tri_self_transpose(L_corr);
      L = diag_pre_multiply(sigs, L_corr);
    } else {
      L = diag_matrix(sigs);
    }
    real s2 = square(sigma);
    for (j in 1:J) {
      matrix[q, q] A_inv = inverse_spd(add_diag(quad_form_sym(ZtZ[j], L) / s2, 1));
      vector[q] u = L' * (Zty[j] - XtZ[j]' * beta);
      b[j] = multi_normal_rng(L * A_inv * u / s2, quad_form_sym(A_inv, L'))';
    }
  }
}
