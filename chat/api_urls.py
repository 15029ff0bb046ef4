from rest_framework.routers import SimpleRouter

from chat import api

router = SimpleRouter()
router.register("conversations", api.ConversationViewSet, basename="conversation")

urlpatterns = router.urls
