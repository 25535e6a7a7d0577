"""layerscope: the Streamlit entry point (``streamlit run app.py``, or ``make run``).

Routing lives in :mod:`ui.navigation`. The body is guarded by ``__name__ == "__main__"`` (true
when Streamlit runs this file): the fit worker process (:mod:`core.worker`) may import the
parent's main module and must not run the app.
"""

from __future__ import annotations

if __name__ == "__main__":
    from ui import navigation

    navigation.main()
