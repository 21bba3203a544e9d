"""The live book's step after collection (lambda_src/README.md, "Book step")."""
