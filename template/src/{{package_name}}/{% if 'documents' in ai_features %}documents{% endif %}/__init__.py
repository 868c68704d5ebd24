"""Documents: uploads, text extraction, chunks, embeddings and owner-only semantic search."""
