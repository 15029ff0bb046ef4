from rest_framework.routers import SimpleRouter

from training.api import DeploymentViewSet, TrainingRunViewSet

router = SimpleRouter()
router.register("training/runs", TrainingRunViewSet, basename="training-run")
router.register("training/deployments", DeploymentViewSet, basename="training-deployment")

urlpatterns = router.urls
