"""Customer account pages under /accounts/.

Django's standard URL names (``login``, ``password_reset_confirm`` ...), which its auth
views and e-mails reverse; the admin keeps its own login at /admin/login/.
"""

from django.urls import path

from accounts import views

urlpatterns = [
    path("login/", views.CustomerLoginView.as_view(), name="login"),
    path("logout/", views.CustomerLogoutView.as_view(), name="logout"),
    path("signup/", views.CustomerSignupView.as_view(), name="signup"),
    path("password-reset/", views.CustomerPasswordResetView.as_view(), name="password_reset"),
    path(
        "password-reset/sent/",
        views.CustomerPasswordResetDoneView.as_view(),
        name="password_reset_done",
    ),
    path(
        "reset/<uidb64>/<token>/",
        views.CustomerPasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path(
        "reset/done/",
        views.CustomerPasswordResetCompleteView.as_view(),
        name="password_reset_complete",
    ),
]
