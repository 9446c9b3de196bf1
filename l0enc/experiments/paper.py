"""The papers' published numbers, as the experiments compare against them.

Copied from the tables of the l0 paper (Tables 1-7) and the DDSE paper
(Sec. 4.2); reports and the summary read them from here only.
"""

# ------------------------------------------ l0 paper, Tables 1-3 (approximation)

# Tables 1-3 (Wang et al., AAAI 2016): each method's error at p = 128 / 256 /
# 512, in percent ('l0': Table 1, 'msparse': Table 2) and in mismatched
# support positions per sample ('support': Table 3).
APPROXIMATION_TABLES = {
    'l0': {
        'IHT (2 iterations)': (17.52, 18.73, 22.40),
        'IHT (5 iterations)': (8.14, 6.75, 9.37),
        'IHT (10 iterations)': (3.55, 4.33, 4.08),
        'Baseline encoder': (8.94, 8.76, 10.17),
        'Deep l0-Regularized encoder': (0.92, 0.91, 0.81),
    },
    'msparse': {
        'IHT (2 iterations)': (17.23, 19.27, 19.31),
        'IHT (5 iterations)': (10.84, 12.52, 12.40),
        'IHT (10 iterations)': (5.67, 5.44, 5.20),
        'Baseline encoder': (14.04, 16.76, 12.86),
        'Deep M-Sparse encoder': (2.94, 2.87, 3.29),
    },
    'support': {
        'IHT (2 iterations)': (10.8, 13.4, 13.2),
        'IHT (5 iterations)': (6.1, 8.0, 8.8),
        'IHT (10 iterations)': (4.6, 5.6, 5.3),
        'Deep M-Sparse encoder': (2.2, 2.7, 2.7),
    },
}
APPROXIMATION_CODE_DIMS = (128, 256, 512)


# ------------------------------- l0 paper, Tables 4-7 (classification, clustering)

# Wang et al., AAAI 2016, Tables 4-7: error in % at p = 128 / 256 / 512
# (`TASK_CODE_DIMS`); classification (MNIST, Indian Pines) and clustering
# (COIL-20, CMU PIE), one row per method as the paper labels it.
TASK_CODE_DIMS = (128, 256, 512)
TASK_TABLES = {
    'mnist': {
        'TDSC': (0.71, 0.55, 0.53),
        'Tuned LISTA': (0.74, 0.62, 0.57),
        'Deep l0-Regularized': (0.72, 0.58, 0.52),
        'Deep M-Sparse (M = 10)': (0.72, 0.57, 0.53),
        'Deep M-Sparse (M = 20)': (0.69, 0.54, 0.51),
        'Deep M-Sparse (M = 30)': (0.73, 0.57, 0.52),
    },
    'indian_pines': {
        'TDSC': (15.55, 15.27, 15.21),
        'Tuned LISTA': (16.12, 16.05, 15.97),
        'Deep l0-Regularized': (15.20, 15.07, 15.01),
        'Deep M-Sparse (M = 10)': (13.77, 13.56, 13.52),
        'Deep M-Sparse (M = 20)': (14.67, 14.23, 14.07),
        'Deep M-Sparse (M = 30)': (15.14, 15.02, 15.00),
    },
    'coil20': {
        '(Wang et al. 2015a)': (17.75, 17.14, 17.15),
        '(Wang et al. 2015b), graph-regularized': (14.47, 14.17, 14.08),
        'Deep l0-Regularized': (14.52, 14.27, 14.06),
        'Deep M-Sparse (M = 10)': (14.59, 14.25, 14.03),
        'Deep M-Sparse (M = 20)': (14.84, 14.33, 14.15),
        'Deep M-Sparse (M = 30)': (14.77, 14.37, 14.12),
    },
    'pie': {
        '(Wang et al. 2015a)': (17.50, 17.26, 17.20),
        '(Wang et al. 2015b), graph-regularized': (16.14, 15.58, 15.09),
        'Deep l0-Regularized': (16.08, 15.72, 15.41),
        'Deep M-Sparse (M = 10)': (16.77, 16.46, 16.02),
        'Deep M-Sparse (M = 20)': (16.44, 16.23, 16.05),
        'Deep M-Sparse (M = 30)': (16.46, 16.17, 16.01),
    },
}


# --------------------------------------------------------- DDSE paper, Sec. 4.2
# Wang et al., "Deep Double Sparsity Encoder", Sec. 4.2 (MNIST, softmax loss).

# The defaults of every figure: s = n/4, m = 1024, k = 2 stages, all t
# training images; SGD with momentum 0.9, batch 128, learning rate 0.01
# (decreased on a validation schedule), PGD every 15 steps (Sec. 4.1).
DDSE_DEFAULTS = {
    'sparsity_ratio': 0.25, 'code_dim': 1024, 'num_stages': 2,
    'train_fraction': 1.0, 'batch_size': 128, 'momentum': 0.9,
    'learning_rate': 0.01, 'project_every': 15,
}
# The values each sweep spans: s/n (Fig. 3), m (Fig. 4), ts/t (Fig. 5) and
# k (Fig. 6); the end points are the paper's, the ticks between ours.
DDSE_SWEEP_VALUES = {
    'sparsity_ratio': (0.1, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6),
    'code_dim': (800, 1024, 1200, 1400, 1600, 1800, 2000),
    'train_fraction': (0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0),
    'num_stages': (1, 2, 3, 4, 5, 6),
}
# Fig. 5: the test error increase (points) from ts/t = 1 to 0.05: DDSE's
# "slight performance loss of 2.46%"; baselines IV and V lose more than
# these (read from the figure).
DDSE_LOSS_AT_5_PERCENT = 2.46
DDSE_BASELINE_LOSSES_AT_5_PERCENT_ABOVE = {'IV': 6.0, 'V': 4.0}


# ------------------------------ the field's unrolled benchmark (250 x 500 CS)
# LISTA-CPSS (Chen et al. 2018) and ALISTA (Liu et al. 2019): NMSE (dB) at 16
# stages on the noiseless problem, read off their plots (about +-3 dB):
# LISTA about -35 to -40, LISTA-CPSS about -60, ALISTA about -70 or below.
# Our l0 encoders are held to the best l1 ones' level (-60 dB).
UNROLLED_TARGETS_DB = {'lista': -35.0, 'lista_shared': -35.0,
                       'lista_cpss': -60.0, 'lista_cpss_shared': -60.0,
                       'alista': -70.0,
                       'deep_l0': -60.0, 'deep_msparse': -60.0,
                       'alista_l0': -60.0, 'alista_msparse': -60.0}
