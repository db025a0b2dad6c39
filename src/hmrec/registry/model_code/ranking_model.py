"""Models-from-code entry point MLflow runs to load hmrec's ranking_model."""

from mlflow.models import set_model

from hmrec.registry.pyfunc_models import RankingPyfunc

set_model(RankingPyfunc())
