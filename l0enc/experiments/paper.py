"""The papers' published numbers, as the experiments compare against them.

Copied from the tables of the l0 paper (Tables 1-7) and the DDSE paper
(Sec. 4.2); reports and the summary read them from here only.
"""

# ------------------------------------------ l0 paper, Tables 1-3 (approximation)



# ------------------------------- l0 paper, Tables 4-7 (classification, clustering)



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


