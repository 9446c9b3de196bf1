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



# --------------------------------------------------------- DDSE paper, Sec. 4.2


