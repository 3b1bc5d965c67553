"""io: getting images into a graph — files, folders, globs, videos and cameras."""
