"""The console's forms (Flask-WTF): each carries a CSRF token and validates its fields."""
from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import (BooleanField, DecimalField, HiddenField, IntegerField, PasswordField, SelectField,
                     SelectMultipleField, StringField, TextAreaField)
from wtforms.validators import DataRequired, Length, NumberRange, Optional

from server.store import ALL_SCOPES


class PostForm(FlaskForm):
    """A bare form: a button whose only field is the CSRF token (logout, revoke, remove)."""


class LoginForm(FlaskForm):
    api_key = PasswordField("API key", validators=[DataRequired(), Length(max=200)])


class SearchForm(FlaskForm):
    class Meta:
        csrf = False            # a GET search changes nothing
    q = StringField("Number", validators=[DataRequired(), Length(max=64)])
    region = StringField("Region", default="CN", validators=[Optional(), Length(min=2, max=2)])


class DecisionForm(FlaskForm):
    decision = SelectField("Decision", choices=["accept", "reject"])
    reason = TextAreaField("Reason", validators=[DataRequired(message="give the reason for the decision"),
                                                 Length(max=2000)])


class VerifiedForm(FlaskForm):
    number = StringField("Number", validators=[DataRequired(), Length(max=64)])
    company = StringField("Company", validators=[DataRequired(), Length(max=200)])
    region = StringField("Region", default="CN", validators=[Optional(), Length(min=2, max=2)])


class KeyForm(FlaskForm):
    label = StringField("Label", validators=[Optional(), Length(max=200)])
    scopes = SelectMultipleField("Scopes", choices=list(ALL_SCOPES),
                                 validators=[DataRequired(message="pick at least one scope")])


class AuditFilter(FlaskForm):
    class Meta:
        csrf = False
    actor = StringField("Actor", validators=[Optional(), Length(max=100)])
    action = StringField("Action", validators=[Optional(), Length(max=100)])
    target = StringField("Target", validators=[Optional(), Length(max=100)])


class ReleaseForm(FlaskForm):
    """A release action; `confirm` is set by the confirmation page's button."""
    action = SelectField("Action", choices=["promote", "rollback", "rollout"])
    channel = StringField("Channel", validators=[DataRequired(), Length(max=64)])
    from_channel = StringField("From channel", validators=[Optional(), Length(max=64)])
    to_version = IntegerField("To version", validators=[Optional(), NumberRange(min=1)])
    percent = DecimalField("Rollout %", places=None, validators=[Optional(), NumberRange(min=0, max=100)])
    confirm = HiddenField()
    acknowledge = BooleanField("I have checked what this changes")
