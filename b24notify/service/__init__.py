"""The web side: the Starlette app that receives Bitrix24 events."""
