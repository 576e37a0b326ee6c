"""The playground: a local page that trains the MLP or the tiny GPT on every backend live.

config.py checks a page's settings with the command's own parser; runs.py keeps each run's lanes and
trains a chunk (one continued `Backend.train` per lane); gpt_mode.py is the GPT's setup and attention;
inspector.py one unit's forward and backward; server.py the HTTP endpoints. page.html is the page, and
static/ its style and scripts (plain CSS and JavaScript, no build step)."""
