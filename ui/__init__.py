"""The desktop app: a thin PySide6 layer over the Qt-free core in `assistant`.

Modules: app (entry point), main_window, settings_dialog, player (VLC), workers (QThreads), bridge (core
events -> Qt signals), microphone (listener control), widgets. They are imported by name; nothing is
re-exported here, so importing `ui` itself stays free of Qt.
"""

__all__ = ["app", "bridge", "main_window", "microphone", "player", "settings_dialog", "widgets", "workers"]
