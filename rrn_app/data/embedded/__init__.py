"""Small real datasets shipped with rrn (SST, GloVe rows for SST's words, Tiny Shakespeare, JSB Chorales).

Each folder holds one dataset's files gzip'd and a SOURCE.md (origin, licence, checksums);
rrn_app.data.locate expands them into a cache folder when the user's data.root lacks the dataset.
Made by tools/make_embedded.py.
"""
