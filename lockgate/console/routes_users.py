"""The Users pages: console users (name, role, state) listed for every role; created, given another role,
a new password, disabled, enabled or deleted by an admin.

Every change ends the user's sessions at once (their role or password is what a session was
opened with), is audited with the user's public fields before and after (never a hash or a
password), and is refused for the admin's own account (an admin cannot lock themselves out
from here; another admin, the master key or the CLI can).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import RedirectResponse, Response

from lockgate.console import forms
from lockgate.console.sessions import Session
from lockgate.console.users import MIN_PASSWORD, ROLES, USERNAME, User, UserExists, Users, check_password
from lockgate.console.web import Console, actor
from lockgate.errors import InvalidRequest, NotFound

DONE = {
    "created": "Created; they can log in now.",
    "role": "Role changed; their sessions have ended.",
    "password": "Password reset; their sessions have ended.",
    "disable": "Disabled; their sessions have ended.",
    "enable": "Enabled.",
}


def _password(form: dict[str, str]) -> str:
    password = form.get("password", "")
    try:
        check_password(password)
    except ValueError as err:
        raise forms.FormError("password", str(err)) from None
    if len(password) > 1000:
        raise forms.FormError("password", "at most 1000 characters")
    return password


async def _found(users: Users, username: str) -> User:
    user = await users.get(username[:100])
    if user is None:
        raise NotFound("No such user.")
    return user


def _not_self(session: Session, user: User) -> None:
    if session.subject == user.username:
        raise InvalidRequest("You cannot change your own account here (ask another admin, or use the CLI).", status=409)


def add(router: APIRouter, console: Console, viewer: Any, admin: Any) -> None:
    def page(request: Request, name: str, status: int = 200, **context: Any) -> Response:
        return console.render(request, name, status, roles=ROLES, min_password=MIN_PASSWORD, **context)

    @router.get("/users")
    async def users_page(request: Request, session: Session = Depends(viewer)) -> Response:
        return page(request, "users.html", users=await console.users(request).list(), error=None)

    @router.post("/users")
    async def create_user(request: Request, session: Session = Depends(admin)) -> Response:
        users = console.users(request)
        form = await forms.read_form(request)
        try:
            username = forms.text(form, "username", max_len=100, required=True) or ""
            if not USERNAME.match(username) or username == "master":
                raise forms.FormError("username", "letters, digits and . _ @ + - (not 'master')")
            role = forms.choice(form, "role", ROLES) or "viewer"
            password = _password(form)
        except forms.FormError as err:
            return page(request, "users.html", 400, users=await users.list(), error=str(err))
        try:
            user = await users.create(username, password, role)
        except UserExists:
            raise InvalidRequest("A user with that name exists already.", status=409) from None
        await console.audit(request).record(
            actor(request, session), "user.create", target_type="user", target_id=user.username, after=user.public()
        )
        return RedirectResponse(console.url(request, f"/users/{user.username}?done=created"), status_code=303)

    @router.get("/users/{username}")
    async def user_detail(username: str, request: Request, session: Session = Depends(viewer)) -> Response:
        user = await _found(console.users(request), username)
        done = DONE.get(request.query_params.get("done", ""))
        return page(request, "user.html", user=user, done=done)

    @router.post("/users/{username}/{action}")
    async def change_user(username: str, action: str, request: Request, session: Session = Depends(admin)) -> Response:
        users = console.users(request)
        before = await _found(users, username)
        _not_self(session, before)
        form = await forms.read_form(request)
        if action == "role":
            role = forms.choice(form, "role", ROLES)
            if role is None:
                raise forms.FormError("role", f"one of {', '.join(ROLES)}")
            await users.set_role(before.username, role)
        elif action == "password":
            await users.set_password(before.username, _password(form))
        elif action in ("disable", "enable"):
            await users.set_disabled(before.username, action == "disable")
        elif action == "delete":
            if form.get("confirm", "") != before.username:
                raise forms.FormError("confirm", "type the user name to delete the account")
            await users.delete(before.username)
        else:
            raise NotFound("No such action.")
        after = await users.get(before.username)
        await console.audit(request).record(
            actor(request, session),
            f"user.{action}",
            target_type="user",
            target_id=before.username,
            before=before.public(),
            after=after.public() if after else None,
        )
        if action == "delete":
            return RedirectResponse(console.url(request, "/users"), status_code=303)
        return RedirectResponse(console.url(request, f"/users/{before.username}?done={action}"), status_code=303)
