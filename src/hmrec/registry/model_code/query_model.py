"""Models-from-code entry point MLflow runs to load hmrec's query_model."""

from mlflow.models import set_model

from hmrec.registry.pyfunc_models import QueryPyfunc

set_model(QueryPyfunc())
