"""In-repo node packs: one folder a pack, one node (or tight family) a file."""
