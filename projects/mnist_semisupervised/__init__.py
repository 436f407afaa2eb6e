"""Semi-supervised features (the paper's section 7, item 4): linear classifiers on the
features of a trained D (and of E), fitted with few labels, against the same on pixels."""
