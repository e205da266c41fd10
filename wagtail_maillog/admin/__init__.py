"""The Wagtail admin pages of wagtail-maillog."""
