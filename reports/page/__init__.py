"""The report drawn: report.html (plotly), trials.csv and pareto.csv of a run."""
