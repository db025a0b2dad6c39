"""Models-from-code entry point MLflow runs to load hmrec's candidate_model."""

from mlflow.models import set_model

from hmrec.registry.pyfunc_models import CandidatePyfunc

set_model(CandidatePyfunc())
