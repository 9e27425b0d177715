"""Video data: decoding, sampling, datasets, and the synthetic temporal benchmark."""
