"""Analysis of a trained run: latent embeddings, class volumes, plots and the HTML report."""
