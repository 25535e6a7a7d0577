"""One module per page family; one function per tab or view: widgets -> a cached call -> a figure.

Pages are layout only: they draw the sidebar, a title and the tabs, and call these functions.
"""
