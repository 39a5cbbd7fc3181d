"""The report stage's parts: loading its optional inputs, building sections, and inline SVG charts."""
