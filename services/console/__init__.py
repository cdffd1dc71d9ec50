"""The moderators' web console: login, live flag queue, actions, archived replay."""
