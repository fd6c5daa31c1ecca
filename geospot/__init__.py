"""geospot: teach vision-language models where a street-view photo was taken."""

__version__ = "0.1.0"
