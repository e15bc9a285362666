"""The dashboard: a local FastAPI app over the results store (JSON endpoints and one static page
drawing Plotly charts with the plotly package's bundled plotly.min.js); no models, no internet."""
