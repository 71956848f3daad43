"""The application: the command line (:mod:`~mutomo.app.cli`), run directories
(:mod:`~mutomo.app.run`), ``mutomo sweep`` (:mod:`~mutomo.app.sweep`) and the demo figure
(:mod:`~mutomo.app.demo`)."""
