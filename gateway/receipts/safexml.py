"""XML from strangers read without DTDs, entities or external references.

A De-Mail confirmation's XML comes from the mailbox, so it is hostile until proven
otherwise. A document type declaration is where entity expansion ("billion laughs"),
external entities (file and network reads) and external DTDs live; TR 01201's documents
need none of them. So the bytes are refused if they name ``<!DOCTYPE`` or ``<!ENTITY``
(the check ``defusedxml`` would otherwise make, kept without the dependency), and the
expat parser is driven directly with handlers that refuse a DOCTYPE, an entity
declaration, an external entity reference or a notation whatever the encoding, so the
byte check is not the only line. The tree is built with ``xml.etree``'s ``TreeBuilder``.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import NoReturn
from xml.parsers import expat

__all__ = ["UnsafeXml", "XmlError", "parse_xml"]

_DECLARATIONS = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


class XmlError(ValueError):
    """The bytes are not well-formed XML."""


class UnsafeXml(XmlError):
    """The XML declares a DTD, entities or notations: refused before anything is expanded."""


def _refuse(*_args: object) -> NoReturn:
    raise UnsafeXml("DTD, entity or notation declaration")


def parse_xml(data: bytes) -> ET.Element:
    """The document's root element; ``UnsafeXml`` or ``XmlError`` otherwise.

    Element names come back in ``{namespace}local`` form, as ``xml.etree`` spells them.
    """
    if _DECLARATIONS.search(data):
        raise UnsafeXml("DOCTYPE or ENTITY in the document")
    builder = ET.TreeBuilder()
    parser = expat.ParserCreate(namespace_separator="}")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse
    parser.EntityDeclHandler = _refuse
    parser.UnparsedEntityDeclHandler = _refuse
    parser.ExternalEntityRefHandler = _refuse
    parser.NotationDeclHandler = _refuse
    parser.StartElementHandler = lambda name, attrs: builder.start(_tag(name), {_tag(k): v for k, v in attrs.items()})
    parser.EndElementHandler = lambda name: builder.end(_tag(name))
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise XmlError(f"not well-formed XML: {expat.ErrorString(exc.code)}") from None
    return builder.close()


def _tag(name: str) -> str:
    """expat's ``uri}local`` as ``{uri}local``; names without a namespace stay as they are."""
    return "{" + name if "}" in name else name
