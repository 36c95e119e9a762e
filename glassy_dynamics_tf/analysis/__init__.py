"""The paper's analyses of a trained model (analyze_main.py).

One module per study, each a pure core (NumPy / the model's `predict`) and a
`run(model, ids, records, output_dir, ...)` that writes <study>.json and
<study>.png:

  shell_ablation      Extended Data Fig. 8: quality vs graph shells seen;
                      the receptive field (num_recurrences hops).
  edge_perturbation   Fig. 5c, Extended Data Fig. 9: response of a
                      prediction to displacements at distance d.
  correlation_length  Fig. 5b: spatial correlation C(r) of predictions,
                      propensities or embeddings, and its length ξ.
  embeddings          node embeddings (the core's final latent nodes) and
                      their t-SNE map coloured by propensity.
  common              inputs (files or TFDS), the model, JSON and figures.
"""
