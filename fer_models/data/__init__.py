"""Datasets, synthetic faces, landmarks, the AU codebook and AU maps."""
