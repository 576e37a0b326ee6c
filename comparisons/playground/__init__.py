"""The playground: a local page that trains on every backend live. server.py serves it and runs the
training; page.html is the page itself (plain HTML, CSS and JavaScript, no build step)."""
