"""Customer sign-in, sign-out, password reset and sign-up.

Django's auth views with our templates, so anything that plugs into them (login-attempt
limiting such as django-axes) works unchanged. Sign-in also moves the device's anonymous
conversations into the account.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import login as auth_login
from django.contrib.auth import views as auth_views
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.shortcuts import resolve_url
from django.urls import reverse_lazy
from django.utils.decorators import method_decorator
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.generic import FormView

from accounts import services
from accounts.forms import CustomerSignupForm
from chat.visitors import VISITOR_COOKIE, visitor_id_from_token


def _device_visitor_id(request: HttpRequest) -> str:
    return visitor_id_from_token(request.COOKIES.get(VISITOR_COOKIE))


class AccountPageMixin:
    """What every account page's template needs."""

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)  # type: ignore[misc]
        context["signup_enabled"] = settings.CUSTOMER_SIGNUP_ENABLED
        return context


class CustomerLoginView(AccountPageMixin, auth_views.LoginView):
    template_name = "accounts/login.html"
    redirect_authenticated_user = True

    def get_redirect_url(self, *args: Any, **kwargs: Any) -> str:
        # ?next= pointing back here would make Django raise on a signed-in visit
        # ("Redirection loop"), a 500 for a crafted link: go to the chat instead.
        wanted = super().get_redirect_url(*args, **kwargs)
        return "" if wanted.split("?")[0] == self.request.path else wanted

    def form_valid(self, form: Any) -> HttpResponse:
        response = super().form_valid(form)  # logs in (rotates the session)
        services.customer_signed_in(
            user=form.get_user(), visitor_id=_device_visitor_id(self.request)
        )
        return response


class CustomerLogoutView(auth_views.LogoutView):
    """POST only (Django's rule). The device forgets its visitor token too, so the next
    person on a shared device starts with no conversations."""

    next_page = "/"

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = super().post(request, *args, **kwargs)
        response.delete_cookie(VISITOR_COOKIE, samesite="Lax")
        return response


class CustomerPasswordResetView(AccountPageMixin, auth_views.PasswordResetView):
    template_name = "accounts/password_reset_form.html"
    email_template_name = "accounts/password_reset_email.txt"
    subject_template_name = "accounts/password_reset_subject.txt"


class CustomerPasswordResetDoneView(AccountPageMixin, auth_views.PasswordResetDoneView):
    template_name = "accounts/password_reset_done.html"


class CustomerPasswordResetConfirmView(AccountPageMixin, auth_views.PasswordResetConfirmView):
    template_name = "accounts/password_reset_confirm.html"


class CustomerPasswordResetCompleteView(AccountPageMixin, auth_views.PasswordResetCompleteView):
    template_name = "accounts/password_reset_complete.html"


class CustomerSignupView(AccountPageMixin, FormView):
    """Only when ``CUSTOMER_SIGNUP_ENABLED``; otherwise the page does not exist."""

    template_name = "accounts/signup.html"
    form_class = CustomerSignupForm
    success_url = reverse_lazy("chat:page")

    @method_decorator(sensitive_post_parameters("password1", "password2"))
    @method_decorator(never_cache)
    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not settings.CUSTOMER_SIGNUP_ENABLED:
            raise Http404("Sign-up is not enabled.")
        if request.user.is_authenticated:
            return HttpResponseRedirect(self.get_success_url())
        return super().dispatch(request, *args, **kwargs)

    def get_success_url(self) -> str:
        wanted = self.request.POST.get("next") or self.request.GET.get("next", "")
        if url_has_allowed_host_and_scheme(
            wanted, allowed_hosts={self.request.get_host()}, require_https=self.request.is_secure()
        ):
            return wanted
        return resolve_url(self.success_url)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["next"] = self.request.POST.get("next") or self.request.GET.get("next", "")
        return context

    def form_valid(self, form: CustomerSignupForm) -> HttpResponse:
        user = services.customer_signup(
            username=form.cleaned_data["username"],
            email=form.cleaned_data["email"],
            password=form.cleaned_data["password1"],
        )
        auth_login(self.request, user, backend="django.contrib.auth.backends.ModelBackend")
        services.customer_signed_in(user=user, visitor_id=_device_visitor_id(self.request))
        return HttpResponseRedirect(self.get_success_url())
