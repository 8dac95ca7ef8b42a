"""HTTP handlers: parse the request, call the model, render the response."""
