"""The papers' published numbers, as the experiments compare against them.

Copied from the tables of the l0 paper (Tables 1-7) and the DDSE paper
(Sec. 4.2); reports and the summary read them from here only.
"""

# ------------------------------------------ l0 paper, Tables 1-3 (approximation)



# ------------------------------- l0 paper, Tables 4-7 (classification, clustering)



# --------------------------------------------------------- DDSE paper, Sec. 4.2


