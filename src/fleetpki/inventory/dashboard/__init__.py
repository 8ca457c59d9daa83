"""The web dashboard: server-rendered pages (Jinja2), htmx for partial updates, Chart.js."""
